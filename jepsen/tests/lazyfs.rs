//! The power-loss layer, mounted for real: reads see un-synced writes; a power cut drops what
//! was not fsync'ed (data, appends, truncates) and keeps what was; close persists nothing;
//! metadata goes through at once. Each test prints SKIP and passes if FUSE cannot be mounted
//! on this machine (no /dev/fuse, not root and no fusermount3).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use atoll_jepsen::lazyfs::{LazyMount, Unsynced};

struct Layer {
    mount: LazyMount,
    _dir: tempfile::TempDir,
    backing: PathBuf,
    root: PathBuf,
}

impl Layer {
    fn at(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn layer(test: &str) -> Option<Layer> {
    let dir = tempfile::tempdir().expect("temp dir");
    let backing = dir.path().join("backing");
    let root = dir.path().join("mnt");
    fs::create_dir(&backing).expect("backing dir");
    fs::create_dir(&root).expect("mountpoint");
    match LazyMount::mount(&backing, &root) {
        Ok(mount) => Some(Layer {
            mount,
            _dir: dir,
            backing,
            root,
        }),
        Err(e) => {
            println!("SKIP {test}: cannot mount FUSE here ({e})");
            None
        }
    }
}

fn rw(path: &PathBuf) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .expect("open")
}

#[test]
fn reads_see_unsynced_writes_before_the_cut() {
    let Some(l) = layer("reads_see_unsynced_writes_before_the_cut") else {
        return;
    };
    fs::write(l.at("f"), b"hello").unwrap();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"hello");
    assert_eq!(fs::metadata(l.at("f")).unwrap().len(), 5);
    // Nothing reached the backing file: only the (empty) file was created.
    assert_eq!(fs::read(l.backing.join("f")).unwrap(), b"");
    assert_eq!(l.mount.unsynced(), Unsynced { files: 1, bytes: 5 });
}

#[test]
fn a_write_without_fsync_is_gone_after_the_cut_even_after_close() {
    let Some(l) = layer("a_write_without_fsync_is_gone_after_the_cut_even_after_close") else {
        return;
    };
    let mut f = rw(&l.at("f"));
    f.write_all(b"lost").unwrap();
    f.flush().unwrap();
    drop(f); // close: FUSE flush + release, which must not persist
    let lost = l.mount.cut_power();
    assert_eq!(lost.bytes, 4);
    assert!(l.at("f").exists(), "create is metadata: it went through");
    assert_eq!(fs::read(l.at("f")).unwrap(), b"");
}

#[test]
fn a_write_with_fsync_is_kept_after_the_cut() {
    let Some(l) = layer("a_write_with_fsync_is_kept_after_the_cut") else {
        return;
    };
    let mut f = rw(&l.at("f"));
    f.write_all(b"kept").unwrap();
    f.sync_data().unwrap();
    f.write_all(b"+lost").unwrap();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"kept+lost");
    l.mount.cut_power();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"kept");
    assert_eq!(fs::read(l.backing.join("f")).unwrap(), b"kept");
    // The open handle keeps working on the reverted file.
    f.write_all(b"!").unwrap();
    f.sync_all().unwrap();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"kept\0\0\0\0\0!");
}

#[test]
fn truncates_and_overwrites_are_unsynced_state_too() {
    let Some(l) = layer("truncates_and_overwrites_are_unsynced_state_too") else {
        return;
    };
    let f = rw(&l.at("f"));
    (&f).write_all(b"0123456789").unwrap();
    f.sync_all().unwrap();
    f.set_len(3).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(b"ab", 1).unwrap();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"0ab");
    l.mount.cut_power();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"0123456789");
    f.set_len(2).unwrap();
    f.sync_all().unwrap();
    l.mount.cut_power();
    assert_eq!(fs::read(l.at("f")).unwrap(), b"01");
}

#[test]
fn renames_and_directories_go_through_at_once_and_data_follows_the_file() {
    let Some(l) = layer("renames_and_directories_go_through_at_once_and_data_follows_the_file")
    else {
        return;
    };
    fs::create_dir(l.at("d")).unwrap();
    let mut f = rw(&l.at("d/tmp"));
    f.write_all(b"v1").unwrap();
    f.sync_all().unwrap();
    f.write_all(b"v2").unwrap();
    drop(f);
    fs::rename(l.at("d/tmp"), l.at("d/final")).unwrap();
    File::open(l.at("d")).unwrap().sync_all().unwrap(); // fsyncdir
    assert_eq!(fs::read(l.at("d/final")).unwrap(), b"v1v2");
    assert!(l.backing.join("d/final").exists());
    l.mount.cut_power();
    assert_eq!(fs::read(l.at("d/final")).unwrap(), b"v1");
    let names: Vec<_> = fs::read_dir(l.at("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["final"]);
    fs::remove_file(l.at("d/final")).unwrap();
    fs::remove_dir(l.at("d")).unwrap();
    assert!(!l.backing.join("d").exists());
}

#[test]
fn unmount_leaves_only_the_synced_bytes_on_the_backing_dir() {
    let Some(l) = layer("unmount_leaves_only_the_synced_bytes_on_the_backing_dir") else {
        return;
    };
    let mut f = rw(&l.at("f"));
    f.write_all(b"a").unwrap();
    f.sync_all().unwrap();
    f.write_all(b"b").unwrap();
    drop(f);
    let Layer {
        mount,
        _dir,
        backing,
        ..
    } = l;
    mount.unmount().expect("unmount");
    assert_eq!(fs::read(backing.join("f")).unwrap(), b"a");
}
