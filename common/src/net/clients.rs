//! The table of a node's connected publishers and players, for the API (list, kick) and
//! per-client byte counts. Registration is per connection, never per frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use tokio_util::sync::CancellationToken;

use super::io::SharedStream;
use crate::media::Stream;

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

/// Where a player's bytes are booked: its protocol's counter, its stream's stats and, if the
/// fan-out writes to its socket directly, that socket's count of such bytes.
pub struct Egress {
    pub counter: metrics::Counter,
    pub stream: Arc<Stream>,
    pub direct: Option<SharedStream>,
}

/// One connected client.
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
    /// Set once a player starts playing.
    pub egress: OnceLock<Egress>,
}

impl ClientInfo {
    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// Books `own` bytes the player's task wrote plus those the fan-out wrote directly since
    /// the last booking.
    pub fn book_egress(&self, own: u64) {
        let Some(e) = self.egress.get() else {
            return;
        };
        let n = own + e.direct.as_ref().map_or(0, SharedStream::take_direct_sent);
        if n > 0 {
            crate::telemetry::count_egress(&e.counter, n);
            self.add_bytes(n);
            e.stream.stats.bytes_out.fetch_add(n, Ordering::Relaxed);
        }
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
            egress: OnceLock::new(),
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

    /// Books what the fan-out wrote to every player's socket: once a second for the whole
    /// node, so that no player's task has to wake up for it.
    pub fn book_egress(&self) {
        for c in self.lock().values() {
            c.book_egress(0);
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
