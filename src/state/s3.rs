//! The S3 backend: the same files as the folder backend under `s3://bucket/prefix/`. The
//! lock is `lock.json`, created with `If-None-Match: *` and renewed or taken over with
//! `If-Match: ETAG`, so of two processes racing for it exactly one wins.

use aws_sdk_s3::primitives::ByteStream;

use super::{Holder, LockError, StateError};
use crate::state::record::Deployment;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

impl S3Store {
    /// `url` is `s3://bucket/prefix` (prefix optional).
    pub fn new(client: aws_sdk_s3::Client, url: &str) -> Self {
        let rest = url.trim_start_matches("s3://");
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let prefix = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
        Self { client, bucket: bucket.into(), prefix }
    }

    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn save(&self, deployment: &Deployment) -> Result<(), StateError> {
        let key = self.key(&format!("deployments/{}.json", deployment.id));
        let body = serde_json::to_vec_pretty(deployment).expect("record serializes");
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| self.remote(&key, e))?;
        Ok(())
    }

    /// Every record, oldest first (ids sort by start time).
    pub async fn list(&self) -> Result<Vec<Deployment>, StateError> {
        let prefix = self.key("deployments/");
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(&prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.remote(&prefix, e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        keys.sort();
        let mut records = Vec::with_capacity(keys.len());
        for key in keys.iter().filter(|k| k.ends_with(".json")) {
            let (bytes, _) = self.get(key).await?.ok_or_else(|| StateError::Remote {
                location: format!("s3://{}/{key}", self.bucket),
                message: "listed but gone".into(),
            })?;
            records.push(serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
                location: format!("s3://{}/{key}", self.bucket),
                message: e.to_string(),
            })?);
        }
        Ok(records)
    }

    /// The holder and the lock object's ETag.
    pub async fn read_lock(&self) -> Result<Option<(Holder, String)>, StateError> {
        let key = self.key("lock.json");
        let Some((bytes, etag)) = self.get(&key).await? else { return Ok(None) };
        let holder = serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            location: format!("s3://{}/{key}", self.bucket),
            message: e.to_string(),
        })?;
        Ok(Some((holder, etag)))
    }

    pub async fn acquire(&self, holder: &Holder) -> Result<Option<Holder>, LockError> {
        match self.read_lock().await? {
            None => match self.put_lock(holder, Condition::Absent).await? {
                true => Ok(None),
                false => Err(self.held().await),
            },
            Some((current, etag)) if current.is_stale() => match self.put_lock(holder, Condition::Etag(&etag)).await? {
                true => Ok(Some(current)),
                false => Err(self.held().await),
            },
            Some((current, _)) => Err(LockError::Held(Box::new(current))),
        }
    }

    pub async fn renew(&self, holder: &Holder) -> Result<(), LockError> {
        match self.read_lock().await? {
            Some((current, etag)) if current.token == holder.token => {
                if self.put_lock(holder, Condition::Etag(&etag)).await? {
                    Ok(())
                } else {
                    Err(LockError::Lost(self.read_lock().await?.map(|(h, _)| Box::new(h))))
                }
            }
            other => Err(LockError::Lost(other.map(|(h, _)| Box::new(h)))),
        }
    }

    pub async fn release(&self, holder: &Holder) -> Result<(), LockError> {
        let key = self.key("lock.json");
        if let Some((current, _)) = self.read_lock().await?
            && current.token == holder.token
        {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.remote(&key, e))?;
        }
        Ok(())
    }

    async fn held(&self) -> LockError {
        match self.read_lock().await {
            Ok(Some((h, _))) => LockError::Held(Box::new(h)),
            Ok(None) => LockError::State(StateError::Remote {
                location: self.location(),
                message: "the lock changed hands while it was being taken; try again".into(),
            }),
            Err(e) => e.into(),
        }
    }

    /// Writes the lock under a condition; `false` when the condition failed (412/409).
    async fn put_lock(&self, holder: &Holder, condition: Condition<'_>) -> Result<bool, StateError> {
        let key = self.key("lock.json");
        let body = serde_json::to_vec_pretty(holder).expect("holder serializes");
        let mut put = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body));
        put = match condition {
            Condition::Absent => put.if_none_match("*"),
            Condition::Etag(etag) => put.if_match(etag),
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let status = e.raw_response().map(|r| r.status().as_u16());
                if matches!(status, Some(412 | 409)) { Ok(false) } else { Err(self.remote(&key, e)) }
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, StateError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let etag = out.e_tag().unwrap_or_default().to_owned();
                let bytes = out.body.collect().await.map_err(|e| StateError::Remote {
                    location: format!("s3://{}/{key}", self.bucket),
                    message: e.to_string(),
                })?;
                Ok(Some((bytes.to_vec(), etag)))
            }
            Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(self.remote(key, e)),
        }
    }

    fn remote<E: std::error::Error + 'static>(&self, key: &str, e: aws_sdk_s3::error::SdkError<E>) -> StateError {
        let message = match &e {
            aws_sdk_s3::error::SdkError::ServiceError(s) => {
                let status = s.raw().status().as_u16();
                match status {
                    403 => "access denied: the credentials may not read or write the state bucket".to_owned(),
                    404 => "the state bucket does not exist".to_owned(),
                    _ => format!("HTTP {status}: {}", aws_sdk_s3::error::DisplayErrorContext(&e)),
                }
            }
            _ => aws_sdk_s3::error::DisplayErrorContext(&e).to_string(),
        };
        StateError::Remote { location: format!("s3://{}/{key}", self.bucket), message }
    }
}

enum Condition<'a> {
    Absent,
    Etag(&'a str),
}
