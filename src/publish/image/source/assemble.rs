//! Assembling an image from `base` and `layers`, without a daemon: each layer a
//! reproducible tar.gz (`layer.rs`, built in parallel), then the OCI image config (the
//! base's config with `entrypoint`, `cmd`, `env`, `labels`, `workdir` and `user` applied,
//! `created` at the source date, the layers' diff_ids appended) and the OCI manifest.
//! Same base, same files and same source date give the same manifest digest.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use super::base::{self, Base};
use super::{Blob, Context, LocalImage, Origin, layer};
use crate::config;
use crate::publish::image::ImageError;
use crate::publish::image::digest::Digest;
use crate::publish::image::oci::{Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST, oci_layer_type};
use crate::publish::image::registry::BlobSource;

pub async fn assemble(base_ref: &str, image: &config::Image, ctx: &Context<'_>) -> Result<LocalImage, ImageError> {
    let base = if base_ref == "scratch" { None } else { Some(base::pull(base_ref, ctx).await?) };

    let limit = Arc::new(tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));
    let mut jobs = Vec::new();
    for (i, l) in image.layers.iter().enumerate() {
        let src = ctx.project_dir.join(l.src.as_str());
        if std::fs::symlink_metadata(&src).is_err() {
            return Err(ImageError::SourceMissing { image: ctx.image.to_owned(), key: "layers.src", path: src });
        }
        let out = ctx.scratch.join(format!("{}-layer-{i}.tar.gz", ctx.image));
        let (dest, epoch, cancel, limit) =
            (l.dest.clone(), ctx.source_date_epoch, Arc::clone(ctx.cancel), limit.clone());
        jobs.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("never closed");
            tokio::task::spawn_blocking(move || layer::build(&src, &dest, epoch, &out, &cancel)).await
        }));
    }
    let mut built = Vec::new();
    for (i, job) in jobs.into_iter().enumerate() {
        match job.await.expect("no panic").expect("no panic") {
            Ok(layer) => built.push(layer),
            Err(layer::LayerError::Interrupted) => return Err(ImageError::Interrupted),
            Err(source) => {
                let src = image.layers[i].src.to_string();
                return Err(ImageError::Layer {
                    image: ctx.image.to_owned(),
                    index: i + 1,
                    src,
                    source: Box::new(source),
                });
            }
        }
    }

    let history: Vec<String> = image.layers.iter().map(|l| format!("gantry: {} -> {}", l.src, l.dest)).collect();
    let diff_ids: Vec<Digest> = built.iter().map(|l| l.diff_id.clone()).collect();
    let config = image_config(base.as_ref().map(|b| &b.config), image, &diff_ids, &history, ctx.source_date_epoch);
    let config = serde_json::to_vec(&config).expect("a config serializes");
    let config_digest = Digest::of(&config);

    let mut layers = Vec::new();
    let mut blobs = vec![Blob {
        digest: config_digest.clone(),
        size: config.len() as u64,
        origin: Origin::Local(BlobSource::Memory(Bytes::from(config.clone()))),
        what: "the assembled config".into(),
    }];
    if let Some(Base { manifest, registry, reference, .. }) = &base {
        for d in &manifest.layers {
            layers.push(Descriptor::new(oci_layer_type(&d.media_type), d.digest.clone(), d.size));
            let origin = Origin::Remote { registry: Arc::clone(registry), repository: reference.repository.clone() };
            let what = format!("base layer {} of {base_ref}", d.digest.short());
            blobs.push(Blob { digest: d.digest.clone(), size: d.size, origin, what });
        }
    }
    for (i, l) in built.into_iter().enumerate() {
        layers.push(Descriptor::new(OCI_LAYER_GZIP, l.digest.clone(), l.size));
        if !blobs.iter().any(|b| b.digest == l.digest) {
            let origin = Origin::Local(BlobSource::File { path: l.path, offset: 0 });
            blobs.push(Blob { digest: l.digest, size: l.size, origin, what: format!("assembled layer {}", i + 1) });
        }
    }
    let manifest = Manifest::oci(Descriptor::new(OCI_CONFIG, config_digest, config.len() as u64), layers).to_bytes();
    let count = image.layers.len();
    Ok(LocalImage {
        digest: Digest::of(&manifest),
        manifest: Bytes::from(manifest),
        media_type: OCI_MANIFEST.to_owned(),
        blobs,
        source: format!("{base_ref} + {count} layer{}", if count == 1 { "" } else { "s" }),
    })
}

/// The image config: the base's (or an empty linux/amd64 one) with the image's settings.
/// `entrypoint` without `cmd` clears the base's `Cmd`, as a Dockerfile's ENTRYPOINT does.
pub fn image_config(
    base: Option<&Value>,
    image: &config::Image,
    diff_ids: &[Digest],
    history: &[String],
    epoch: i64,
) -> Value {
    let mut cfg = base.cloned().unwrap_or_else(|| json!({ "architecture": "amd64", "os": "linux" }));
    let created = jiff::Timestamp::from_second(epoch).unwrap_or(jiff::Timestamp::UNIX_EPOCH).to_string();
    cfg["created"] = json!(created);
    if !cfg["config"].is_object() {
        cfg["config"] = json!({});
    }
    let c = cfg["config"].as_object_mut().expect("made an object");
    if let Some(entrypoint) = &image.entrypoint {
        c.insert("Entrypoint".into(), json!(entrypoint));
        if image.cmd.is_none() {
            c.remove("Cmd");
        }
    }
    if let Some(cmd) = &image.cmd {
        c.insert("Cmd".into(), json!(cmd));
    }
    if !image.env.is_empty() {
        let mut env: Vec<String> = c
            .get("Env")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .filter(|kv| !image.env.contains_key(kv.split_once('=').map_or(kv.as_str(), |(k, _)| k)))
            .collect();
        env.extend(image.env.iter().map(|(k, v)| format!("{k}={v}")));
        c.insert("Env".into(), json!(env));
    }
    if !image.labels.is_empty() {
        let labels = c.entry("Labels").or_insert_with(|| json!({}));
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in &image.labels {
            labels[k.as_str()] = json!(v);
        }
    }
    if let Some(workdir) = &image.workdir {
        c.insert("WorkingDir".into(), json!(workdir));
    }
    if let Some(user) = &image.user {
        c.insert("User".into(), json!(user));
    }
    if !cfg["rootfs"].is_object() {
        cfg["rootfs"] = json!({ "type": "layers", "diff_ids": [] });
    }
    let ids = cfg["rootfs"]["diff_ids"].as_array().cloned().unwrap_or_default();
    cfg["rootfs"]["diff_ids"] = json!(ids.into_iter().chain(diff_ids.iter().map(|d| json!(d))).collect::<Vec<_>>());
    // History must line up with the layers: extend it only when the base kept one.
    if base.is_none() || cfg["history"].is_array() {
        let mut entries = cfg["history"].as_array().cloned().unwrap_or_default();
        entries.extend(history.iter().map(|h| json!({ "created": created, "created_by": h })));
        cfg["history"] = json!(entries);
    }
    cfg
}

#[cfg(test)]
#[path = "assemble_tests.rs"]
mod tests;
