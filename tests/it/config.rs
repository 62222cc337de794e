//! gantry.toml loading: good files, bad files and their messages.
