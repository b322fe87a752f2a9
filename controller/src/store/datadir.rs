//! The data directory's permissions: readable by its owner only (directories 0700, files
//! 0600) from the first start, since it holds password hashes, token hashes and env secrets.

use std::io;
use std::path::{Path, PathBuf};

/// One path whose group/other permission bits were removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The file or directory.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub from: u32,
    /// Its mode after.
    pub to: u32,
}

/// Creates `dir` (and missing parents) with mode 0700 at creation, never briefly looser.
/// An existing directory is left as it is (see [`tighten`]).
///
/// # Errors
///
/// The I/O error from creating it.
pub fn create_private(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Removes the group and other permission bits from `dir` and everything under it (symbolic
/// links are not followed), and returns what it changed.
///
/// # Errors
///
/// The first I/O error reading or changing a mode.
pub fn tighten(dir: &Path) -> io::Result<Vec<Tightened>> {
    let mut changed = Vec::new();
    #[cfg(unix)]
    tighten_into(dir, &mut changed)?;
    Ok(changed)
}

#[cfg(unix)]
fn tighten_into(path: &Path, changed: &mut Vec<Tightened>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // Gone meanwhile (the engine replaces snapshot files): nothing to tighten.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        let to = mode & !0o077;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(to)) {
            Ok(()) => changed.push(Tightened { path: path.to_owned(), from: mode, to }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            tighten_into(&entry?.path(), changed)?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777).unwrap_or(0)
    }

    #[test]
    fn a_new_directory_is_created_owner_only() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a/b");
        create_private(&dir).expect("create");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
    }

    #[test]
    fn loose_modes_are_tightened_and_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        std::fs::create_dir(&dir).expect("mkdir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let file = dir.join("db");
        std::fs::write(&file, b"x").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let changed = tighten(&dir).expect("tighten");
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(changed.len(), 2, "{changed:?}");
        assert!(changed.iter().any(|t| t.path == file && t.from == 0o644 && t.to == 0o600));
        assert!(tighten(&dir).expect("again").is_empty(), "nothing left to change");
    }
}
