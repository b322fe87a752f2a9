//! Helpers shared by the store tests: objects to write, a store on a temporary directory.
#![allow(dead_code)]

use std::path::Path;

use berth_controller::store::{SledStore, StoreConfig, WriteContext};
use berth_schemas::{API_VERSION, DynamicObject, Kind, ObjectMeta, ResourceKey};
use serde_json::json;

/// A Container object with an image, in the default namespace.
pub fn container(name: &str, image: &str) -> DynamicObject {
    DynamicObject {
        api_version: API_VERSION.into(),
        kind: Kind::Container,
        metadata: ObjectMeta::named(name),
        spec: json!({ "image": image }),
        status: serde_json::Value::Null,
    }
}

/// The same with labels.
pub fn labelled(name: &str, labels: &[(&str, &str)]) -> DynamicObject {
    let mut o = container(name, "nginx:1");
    o.metadata.labels = labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
    o
}

/// The key of a default-namespace Container.
pub fn key(name: &str) -> ResourceKey {
    ResourceKey::new(Kind::Container, "default", name)
}

/// A person writing through the REST API.
pub fn alice() -> WriteContext {
    WriteContext::rest_user("alice")
}

/// Runs `open` until its error is no longer sled's "directory locked" error, for up to 10 s.
///
/// sled lets go of a database's directory lock from its background I/O threads some moments
/// after the last handle is dropped, so a test that closes a store (or a raw sled handle) and
/// reopens the directory at once can find it still locked, more so on a loaded machine.
pub fn waiting_for_the_lock<T, E: std::fmt::Debug>(
    mut open: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match open() {
            Err(e)
                if format!("{e:?}").contains("WouldBlock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Opens a store in `dir` with default settings.
pub fn open(dir: &Path) -> SledStore {
    waiting_for_the_lock(|| SledStore::open(StoreConfig::new(dir)))
        .unwrap_or_else(|e| panic!("open {}: {e:#?}", dir.display()))
}

/// Opens a store with a small watch buffer and history.
pub fn open_with(dir: &Path, history: usize, buffer: usize) -> SledStore {
    let mut config = StoreConfig::new(dir);
    config.watch_history = history;
    config.watch_buffer = buffer;
    waiting_for_the_lock(|| SledStore::open(config.clone()))
        .unwrap_or_else(|e| panic!("open {}: {e:#?}", dir.display()))
}

/// Opens the sled database under a closed store directly (to tamper with it), waiting for
/// sled's I/O threads of the previous handle to let go of the directory lock.
pub fn raw_sled(dir: &Path) -> sled::Result<sled::Db> {
    waiting_for_the_lock(|| sled::open(dir))
}
