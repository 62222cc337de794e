//! Tests of reproducible layers: what is in them and that nothing of the host leaks in.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("bin/run"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(dir.join("bin/run"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.join("app.py"), "print('hi')\n").unwrap();
    std::os::unix::fs::symlink("app.py", dir.join("main.py")).unwrap();
}

fn entries(layer: &Path) -> Vec<(String, u32, u64, u64, tar::EntryType)> {
    let gz = flate2::read::GzDecoder::new(File::open(layer).unwrap());
    let mut archive = tar::Archive::new(gz);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            (name, h.mode().unwrap(), h.uid().unwrap(), h.mtime().unwrap(), h.entry_type())
        })
        .collect()
}

#[test]
fn folders_become_sorted_normalised_entries_under_dest() {
    let src = tempfile::tempdir().unwrap();
    tree(src.path());
    let out = tempfile::tempdir().unwrap();
    let layer =
        build(src.path(), "/opt/app/", 1_700_000_000, &out.path().join("l.tar.gz"), &AtomicBool::new(false)).unwrap();
    let names = entries(&layer.path);
    let dir = tar::EntryType::Directory;
    assert_eq!(
        names,
        [
            ("opt/".into(), 0o755, 0, 1_700_000_000, dir),
            ("opt/app/".into(), 0o755, 0, 1_700_000_000, dir),
            ("opt/app/app.py".into(), 0o644, 0, 1_700_000_000, tar::EntryType::Regular),
            ("opt/app/bin/".into(), 0o755, 0, 1_700_000_000, dir),
            ("opt/app/bin/run".into(), 0o755, 0, 1_700_000_000, tar::EntryType::Regular),
            ("opt/app/main.py".into(), 0o777, 0, 1_700_000_000, tar::EntryType::Symlink),
        ]
    );
    assert_eq!(layer.size, std::fs::metadata(&layer.path).unwrap().len());
    assert_eq!(layer.digest, Digest::of(&std::fs::read(&layer.path).unwrap()));
}

#[test]
fn same_files_same_bytes_whatever_the_host_metadata() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    tree(a.path());
    tree(b.path());
    // Different permissions (same executable bit) and mtimes must not matter.
    std::fs::set_permissions(b.path().join("app.py"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(b.path().join("bin/run"), std::fs::Permissions::from_mode(0o751)).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    File::options().write(true).open(b.path().join("app.py")).unwrap().set_modified(old).unwrap();
    let out = tempfile::tempdir().unwrap();
    let no = AtomicBool::new(false);
    let la = build(a.path(), "/app", 0, &out.path().join("a"), &no).unwrap();
    let lb = build(b.path(), "/app", 0, &out.path().join("b"), &no).unwrap();
    assert_eq!((la.digest, la.diff_id), (lb.digest, lb.diff_id));
    let bytes = std::fs::read(out.path().join("a")).unwrap();
    assert_eq!(&bytes[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255], "gzip header: no name, mtime 0, OS unknown");
}

#[test]
fn a_file_goes_to_dest_or_into_a_dest_folder() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("tool"), "x").unwrap();
    let out = tempfile::tempdir().unwrap();
    let no = AtomicBool::new(false);
    let exact = build(&src.path().join("tool"), "/usr/bin/gantry-tool", 0, &out.path().join("a"), &no).unwrap();
    let names: Vec<_> = entries(&exact.path).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["usr/", "usr/bin/", "usr/bin/gantry-tool"]);
    let into = build(&src.path().join("tool"), "/bin/", 0, &out.path().join("b"), &no).unwrap();
    let names: Vec<_> = entries(&into.path).into_iter().map(|e| e.0).collect();
    assert_eq!(names, ["bin/", "bin/tool"]);
    assert!(matches!(
        build(&src.path().join("tool"), "/../x", 0, &out.path().join("c"), &no),
        Err(LayerError::Dest(_))
    ));
}

#[test]
fn compressing_a_tar_reports_both_digests() {
    let out = tempfile::tempdir().unwrap();
    let tar = b"not really a tar, but bytes".to_vec();
    let (digest, size, diff_id) = compress(&tar[..], &out.path().join("l")).unwrap();
    assert_eq!(diff_id, Digest::of(&tar));
    let gz = std::fs::read(out.path().join("l")).unwrap();
    assert_eq!((digest, size), (Digest::of(&gz), gz.len() as u64));
}

#[test]
fn gzip_output_does_not_depend_on_how_writes_are_split() {
    let mut x: u64 = 3;
    let mut data: Vec<u8> = (0..300_000)
        .map(|_| {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (x >> 56) as u8
        })
        .collect();
    data.extend(b"compressible ".repeat(20_000));
    let gz = |piece: usize| {
        let mut w = gzip(Vec::new());
        for c in data.chunks(piece) {
            w.write_all(c).unwrap();
            w.flush().unwrap();
        }
        w.finish().unwrap()
    };
    let reference = gz(8192);
    for piece in [1, 2, 511, 4096, 65_536, 100_000, 1 << 20] {
        assert!(gz(piece) == reference, "{piece}-byte writes give other bytes");
    }
}
