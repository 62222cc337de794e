//! Placeholder until the `local` target lands (branch local-target): it refuses every call.

use std::path::PathBuf;

use super::{Live, Release, Target, TargetError};

pub struct LocalTarget;

impl LocalTarget {
    pub fn new(_name: &str, _config: &crate::config::LocalTarget, _state_dir: PathBuf) -> Result<Self, TargetError> {
        Err(TargetError::new("the local target is not built yet"))
    }
}

impl Target for LocalTarget {
    fn replicas(&self) -> u32 {
        1
    }
    fn public_url(&self) -> String {
        String::new()
    }
    async fn observe(&mut self) -> Result<Live, TargetError> {
        Err(TargetError::new("not built"))
    }
    async fn start_new(&mut self, _: &Release, _: u32) -> Result<String, TargetError> {
        Err(TargetError::new("not built"))
    }
    async fn shift(&mut self, _: u8) -> Result<(), TargetError> {
        Err(TargetError::new("not built"))
    }
    async fn replace(&mut self, _: u32) -> Result<(), TargetError> {
        Err(TargetError::new("not built"))
    }
    async fn retire_old(&mut self) -> Result<(), TargetError> {
        Err(TargetError::new("not built"))
    }
    async fn rollback(&mut self) -> Result<(), TargetError> {
        Err(TargetError::new("not built"))
    }
}
