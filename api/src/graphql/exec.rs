//! Live exec sessions: the `exec` subscription registers one, `execInput` and `execResize` find
//! it by id (only for the user who started it), and ending the subscription removes it, which
//! closes the process's stdin and its attach connection. `execInput(..., eof: true)` closes
//! the process's stdin while its output keeps flowing, so `cat` or `wc -c` can finish.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::mpsc;

/// What `execInput` sends to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Bytes for the process's standard input.
    Data(Bytes),
    /// End of input: the process's standard input is closed (shut down for writing).
    Eof,
}

/// What a mutation needs to reach a running session.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    /// The user who started it.
    pub owner: String,
    /// The Engine's exec id (for resize).
    pub exec_id: String,
    /// Standard input.
    pub input: mpsc::Sender<Input>,
}

/// The sessions of this server, by session id.
#[derive(Debug, Default)]
pub struct Sessions {
    map: Arc<Mutex<HashMap<String, SessionHandle>>>,
}

/// Removes its session when dropped (the subscription ended).
#[derive(Debug)]
pub struct Registration {
    map: Arc<Mutex<HashMap<String, SessionHandle>>>,
    id: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.id);
    }
}

impl Sessions {
    /// Registers a session under `id`.
    pub fn register(&self, id: String, handle: SessionHandle) -> Registration {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).insert(id.clone(), handle);
        Registration { map: Arc::clone(&self.map), id }
    }

    /// The session `id` if `user` started it (someone else's looks the same as none).
    pub fn get(&self, id: &str, user: &str) -> Option<SessionHandle> {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .filter(|h| h.owner == user)
            .cloned()
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_owner_finds_a_session_and_it_goes_with_its_registration() {
        let s = Sessions::default();
        let (tx, _rx) = mpsc::channel(1);
        let h = SessionHandle { owner: "alice".into(), exec_id: "e1".into(), input: tx };
        let reg = s.register("s1".into(), h);
        assert!(s.get("s1", "alice").is_some());
        assert!(s.get("s1", "bob").is_none());
        drop(reg);
        assert!(s.get("s1", "alice").is_none());
        assert!(s.is_empty());
    }
}
