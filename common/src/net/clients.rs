//! The table of a node's connected publishers and players, for the API (list, kick) and
//! per-client byte counts. Registration is per connection, never per frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// Publisher or player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRole {
    Publisher,
    Player,
}

impl ClientRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientRole::Publisher => "publisher",
            ClientRole::Player => "player",
        }
    }
}

/// One connected client.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub role: ClientRole,
    pub protocol: &'static str,
    /// `app/name`.
    pub stream: String,
    pub peer: String,
    /// Unix milliseconds.
    pub connected_at: u64,
    /// Bytes sent to (players) or received from (publishers) this client.
    pub bytes: AtomicU64,
    /// Cancelled to end this client's session (kick, drain deadline).
    pub kick: CancellationToken,
}

impl ClientInfo {
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }
}

/// Every connected client of a node.
#[derive(Default)]
pub struct ClientTable {
    clients: Mutex<HashMap<u64, Arc<ClientInfo>>>,
}

impl ClientTable {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ClientInfo>>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a client; it is removed when the returned guard drops.
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        role: ClientRole,
        protocol: &'static str,
        stream: String,
        peer: String,
    ) -> ClientGuard {
        let info = Arc::new(ClientInfo {
            id,
            role,
            protocol,
            stream,
            peer,
            connected_at: crate::cluster::now_ms(),
            bytes: AtomicU64::new(0),
            kick: CancellationToken::new(),
        });
        self.lock().insert(id, info.clone());
        ClientGuard {
            table: self.clone(),
            info,
        }
    }

    pub fn list(&self) -> Vec<Arc<ClientInfo>> {
        let mut v: Vec<_> = self.lock().values().cloned().collect();
        v.sort_by_key(|c| c.id);
        v
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends client `id`'s session; false if there is no such client.
    pub fn kick(&self, id: u64) -> bool {
        match self.lock().get(&id) {
            Some(c) => {
                c.kick.cancel();
                true
            }
            None => false,
        }
    }

    /// Ends every client's session.
    pub fn kick_all(&self) {
        for c in self.lock().values() {
            c.kick.cancel();
        }
    }
}

/// Keeps a client in the table while alive.
pub struct ClientGuard {
    table: Arc<ClientTable>,
    pub info: Arc<ClientInfo>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.table.lock().remove(&self.info.id);
    }
}
