//! A site's files from its release zip: each one's bytes, SHA-256, content type, and
//! whether its name carries a content hash (`app.3f9a2b1c.js`, `index-BvG4K2xZ.js`).
//! Hashed files never change under their name, so they are cached for a year and
//! uploaded first; the rest (entry points such as `index.html`) are revalidated on every
//! request and uploaded last, so no visitor gets a page that names assets not yet there.

use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::targets::TargetError;

pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const NO_CACHE: &str = "no-cache";

/// One file of the site.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// Path inside the site, `/`-separated, no leading `/`.
    pub path: String,
    pub bytes: Vec<u8>,
    pub sha256: [u8; 32],
    pub hashed: bool,
    pub content_type: &'static str,
}

impl SiteFile {
    pub fn cache_control(&self) -> &'static str {
        if self.hashed { IMMUTABLE } else { NO_CACHE }
    }
}

/// Every file in the zip at `path`, hashed ones first, each group in name order.
pub fn read_zip(path: &Path) -> Result<Vec<SiteFile>, TargetError> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        TargetError::new(format!("cannot read the site archive {}: {what}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(|e| fail("open", &e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| fail("not a zip", &e))?;
    let mut files = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| fail("entry", &e))?;
        if entry.is_dir() || entry.is_symlink() {
            continue;
        }
        let Some(name) = entry.enclosed_name().and_then(|p| p.to_str().map(|s| s.replace('\\', "/"))) else {
            return Err(TargetError::new(format!(
                "the site archive {} has an entry outside its root: {}",
                path.display(),
                entry.name_raw().escape_ascii()
            )));
        };
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
        entry.read_to_end(&mut bytes).map_err(|e| fail(&name, &e))?;
        files.push(SiteFile {
            sha256: Sha256::digest(&bytes).into(),
            hashed: is_hashed(&name),
            content_type: content_type(&name),
            path: name,
            bytes,
        });
    }
    files.sort_by(|a, b| (!a.hashed, &a.path).cmp(&(!b.hashed, &b.path)));
    Ok(files)
}

/// Whether a file name carries a content hash: a dot- or dash-separated part of its stem
/// (not the first) of 8 to 64 letters, digits or `_`, with at least one digit.
pub fn is_hashed(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    let Some((stem, _ext)) = name.rsplit_once('.') else { return false };
    let looks_like_hash = |part: &str| {
        (8..=64).contains(&part.len())
            && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && part.chars().any(|c| c.is_ascii_digit())
    };
    let mut parts = stem.split('.');
    let first = parts.next().unwrap_or_default();
    let dashed = |part: &str| part.rsplit_once('-').is_some_and(|(_, tail)| looks_like_hash(tail));
    dashed(first) || parts.any(|part| looks_like_hash(part) || dashed(part))
}

/// The `Content-Type` for a file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" | "cjs" => "text/javascript; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "xml" => "application/xml",
        "txt" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "csv" => "text/csv; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "avif" => "image/avif",
        "ico" => "image/vnd.microsoft.icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "otf" => "font/otf",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_hashes_are_told_from_names() {
        for hashed in [
            "assets/app.3f9a2b1c.js",
            "main.5d41402abc4b2a76b9719d911017c592.css",
            "assets/index-BvG4K2xZ.js",
            "static/js/787.a1b2c3d4.chunk.js",
            "logo.a1b2c3d4e5.svg",
        ] {
            assert!(is_hashed(hashed), "{hashed}");
        }
        for plain in [
            "index.html",
            "favicon.ico",
            "jquery-3.6.0.min.js",
            "bootstrap.min.css",
            "logo-2024.png",
            "robots.txt",
            "about/index.html",
            "service-worker.js",
            "manifest.webmanifest",
            "README",
        ] {
            assert!(!is_hashed(plain), "{plain}");
        }
    }

    #[test]
    fn content_types_follow_extensions() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(content_type("a/app.3f9a2b1c.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("font.woff2"), "font/woff2");
        assert_eq!(content_type("blob"), "application/octet-stream");
    }
}
