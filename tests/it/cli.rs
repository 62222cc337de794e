//! `gantry` as a user runs it: help, exit codes, commands not built yet.
