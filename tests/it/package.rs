//! `gantry package` end to end: reproducibility, zip layout, tools that read it.
