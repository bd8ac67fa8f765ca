//! The connection limit (`--web.max-connections`), designed so that idle or slow clients cannot
//! starve scrapes: when every slot is taken, a new connection takes the slot of the oldest
//! connection that is not serving a request (still waiting for its request headers, or idle
//! between keep-alive requests), which is closed; only when every slot is serving a request is
//! the new connection closed instead. A scraper that sends its request at once therefore always
//! gets through, whatever other clients hold open.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots, shared by the accept loop and the connections.
pub struct Slots {
    cap: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    /// By id, so by age: the first entry is the oldest connection.
    conns: BTreeMap<u64, Conn>,
}

struct Conn {
    /// Requests being served (0 = waiting for a request).
    busy: usize,
    /// Fired to close the connection when its slot is given to a newer one.
    evict: Option<oneshot::Sender<()>>,
}

/// A connection's slot, freed when dropped.
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
}

/// Held while a request is being served, from its headers to the end of its response body.
pub struct Busy {
    id: u64,
    slots: Arc<Slots>,
}

/// What [`Slots::admit`] decided.
pub enum Admission {
    /// A slot, and the signal that closes the connection if the slot is taken back.
    Admitted(Slot, oneshot::Receiver<()>),
    /// Every slot is serving a request: close this connection.
    Full,
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap: cap.max(1),
            inner: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Gives a new connection a slot, closing the oldest idle connection if needed.
    /// Returns whether an idle connection was closed for it.
    pub fn admit(self: &Arc<Self>) -> (Admission, bool) {
        let mut inner = self.lock();
        let mut evicted = false;
        if inner.conns.len() >= self.cap {
            if !Self::evict_oldest_idle(&mut inner) {
                return (Admission::Full, false);
            }
            evicted = true;
        }
        let id = inner.next_id;
        inner.next_id += 1;
        let (tx, rx) = oneshot::channel();
        inner.conns.insert(
            id,
            Conn {
                busy: 0,
                evict: Some(tx),
            },
        );
        let slot = Slot {
            id,
            slots: self.clone(),
        };
        (Admission::Admitted(slot, rx), evicted)
    }

    /// Closes the oldest connection that is not serving a request (to free a file descriptor
    /// when `accept` fails for lack of them). Returns whether there was one.
    pub fn evict_one(&self) -> bool {
        Self::evict_oldest_idle(&mut self.lock())
    }

    fn evict_oldest_idle(inner: &mut Inner) -> bool {
        let Some(id) = inner
            .conns
            .iter()
            .find(|(_, c)| c.busy == 0)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(mut c) = inner.conns.remove(&id) {
            if let Some(tx) = c.evict.take() {
                let _ = tx.send(());
            }
        }
        true
    }

    /// Connections holding a slot.
    pub fn len(&self) -> usize {
        self.lock().conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Slot {
    /// Marks the connection as serving a request until the returned guard is dropped.
    pub fn busy(&self) -> Busy {
        if let Some(c) = self.slots.lock().conns.get_mut(&self.id) {
            c.busy += 1;
        }
        Busy {
            id: self.id,
            slots: self.slots.clone(),
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(c) = self.slots.lock().conns.get_mut(&self.id) {
            c.busy = c.busy.saturating_sub(1);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().conns.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admitted(a: (Admission, bool)) -> (Slot, oneshot::Receiver<()>, bool) {
        match a {
            (Admission::Admitted(s, rx), evicted) => (s, rx, evicted),
            (Admission::Full, _) => panic!("refused"),
        }
    }

    #[test]
    fn the_oldest_idle_connection_makes_room_and_busy_ones_are_kept() {
        let slots = Slots::new(2);
        let (a, mut a_rx, _) = admitted(slots.admit());
        let (b, mut b_rx, _) = admitted(slots.admit());
        let a_busy = a.busy();
        // Full: b (idle) is the oldest idle one; a is serving.
        let (c, _c_rx, evicted) = admitted(slots.admit());
        assert!(evicted);
        assert!(b_rx.try_recv().is_ok(), "b closed");
        assert!(a_rx.try_recv().is_err(), "a kept");
        drop(b);
        assert_eq!(slots.len(), 2);
        let c_busy = c.busy();
        assert!(matches!(slots.admit().0, Admission::Full));
        drop(a_busy);
        let (_d, _, evicted) = admitted(slots.admit());
        assert!(evicted && a_rx.try_recv().is_ok(), "a, now idle, closed");
        drop(c_busy);
        drop(a);
        assert_eq!(slots.len(), 2);
        drop(c);
        assert_eq!(slots.len(), 1);
    }
}
