//! One bound on the request bodies buffered by all connections and streams together.
//!
//! Each body may be up to 3 MiB (a review carries the object twice), and anyone in the
//! cluster can reach the webhook: 400 connections, or one HTTP/2 connection with many
//! streams, each sending most of a large body and never finishing it, would hold gigabytes.
//! So every byte a body buffers is reserved from one budget first. When a reservation does
//! not fit, the body that has been arriving the longest is shed (answered 503 and dropped):
//! kube-apiserver sends a whole review in milliseconds, so the bodies that linger are the
//! ones stalling on purpose, and a fresh review always finds room. A request shed itself
//! when nothing older is left to shed (its own body alone is over the budget).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// A tenth of a second: how long a reservation waits for a shed body to let go of its bytes.
const RELEASE_WAIT: Duration = Duration::from_millis(100);

/// The shared budget; cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: usize,
    /// `raft_injector_buffered_body_bytes`, kept equal to `used`.
    gauge: prometheus_client::metrics::gauge::Gauge,
    state: Mutex<State>,
    /// Woken whenever bytes are released.
    released: Notify,
}

#[derive(Default)]
struct State {
    used: usize,
    next: u64,
    /// Bodies being read, oldest first (keys grow with arrival).
    readers: BTreeMap<u64, Reader>,
    shed: u64,
}

struct Reader {
    held: usize,
    shed: Arc<Notify>,
    marked: bool,
    /// Once the body is read and answered: the answer's bytes not sent yet.
    answer: Option<Slot>,
}

/// An answer's unsent bytes, shared with the budget so that shedding it frees them at once,
/// even while the connection does not poll the answer (an HTTP/2 client that never opens
/// its receive window).
type Slot = Arc<Mutex<Option<bytes::Bytes>>>;

/// Why a body was not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shed {
    /// A newer request needed the room, and this body had been arriving the longest.
    Evicted,
    /// Nothing older to shed, and no room for this body.
    NoRoom,
}

impl BodyBudget {
    pub fn new(limit: usize) -> BodyBudget {
        Self::with_gauge(limit, prometheus_client::metrics::gauge::Gauge::default())
    }

    /// A budget that reports the bytes it holds in `gauge`.
    pub fn with_gauge(limit: usize, gauge: prometheus_client::metrics::gauge::Gauge) -> BodyBudget {
        BodyBudget {
            inner: Arc::new(Inner {
                limit,
                gauge,
                state: Mutex::new(State::default()),
                released: Notify::new(),
            }),
        }
    }

    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Bytes held by bodies being read now.
    pub fn used(&self) -> usize {
        self.lock().used
    }

    /// Bodies shed since the start.
    pub fn shed_total(&self) -> u64 {
        self.lock().shed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock leaves plain numbers behind; keep going with them.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts reading one body; its bytes are released when the returned hold drops.
    pub fn enter(&self) -> Hold {
        let shed = Arc::new(Notify::new());
        let mut state = self.lock();
        let key = state.next;
        state.next += 1;
        state.readers.insert(
            key,
            Reader {
                held: 0,
                shed: shed.clone(),
                marked: false,
                answer: None,
            },
        );
        Hold {
            budget: self.clone(),
            key,
            shed,
        }
    }
}

/// One body's share of the budget.
pub struct Hold {
    budget: BodyBudget,
    key: u64,
    shed: Arc<Notify>,
}

impl Hold {
    /// Reserves `bytes` more for this body, shedding the oldest other bodies to make room.
    pub async fn reserve(&self, bytes: usize) -> Result<(), Shed> {
        loop {
            {
                let mut state = self.budget.lock();
                if state.readers.get(&self.key).is_some_and(|r| r.marked) {
                    return Err(Shed::Evicted);
                }
                if state.used + bytes <= self.budget.inner.limit {
                    state.used += bytes;
                    self.budget.inner.gauge.set(state.used as i64);
                    if let Some(me) = state.readers.get_mut(&self.key) {
                        me.held += bytes;
                    }
                    return Ok(());
                }
                // The oldest body still holding bytes, other than this one and not already
                // on its way out; only bodies older than this one are shed for it.
                let victim = state
                    .readers
                    .range(..self.key)
                    .find(|(_, r)| r.held > 0 && !r.marked)
                    .map(|(k, _)| *k);
                let pending = state
                    .readers
                    .range(..self.key)
                    .any(|(_, r)| r.held > 0 && r.marked);
                match victim {
                    Some(key) => {
                        state.shed += 1;
                        let Some(r) = state.readers.get_mut(&key) else {
                            continue;
                        };
                        r.marked = true;
                        if let Some(slot) = &r.answer {
                            // An answer nobody reads: its bytes go now, unsent.
                            drop(slot.lock().unwrap_or_else(|e| e.into_inner()).take());
                            let freed = std::mem::take(&mut r.held);
                            state.used -= freed;
                            self.budget.inner.gauge.set(state.used as i64);
                            continue;
                        }
                        r.shed.notify_one();
                    }
                    None if pending => {}
                    None => {
                        state.shed += 1;
                        return Err(Shed::NoRoom);
                    }
                }
            }
            // Wait for the shed body to drop its bytes (its task wakes and returns).
            let released = self.budget.inner.released.notified();
            let _ = tokio::time::timeout(RELEASE_WAIT, released).await;
        }
    }

    /// Trades the request body's bytes for the answer's: they stay counted until the answer
    /// is sent or dropped. An answer still unsent when newer requests need the room is shed
    /// like a stalled body (oldest first); its bytes are freed at once and the stream is reset.
    pub fn answer(self, answer: bytes::Bytes) -> AnswerBody {
        let len = answer.len();
        let slot: Slot = Arc::new(Mutex::new(Some(answer)));
        {
            let mut state = self.budget.lock();
            if let Some(r) = state.readers.get_mut(&self.key) {
                let before = r.held;
                r.held = len;
                r.answer = Some(slot.clone());
                state.used = state.used - before + len;
                self.budget.inner.gauge.set(state.used as i64);
            }
        }
        self.budget.inner.released.notify_waiters();
        AnswerBody {
            _hold: self,
            slot,
            left: len,
        }
    }

    /// Resolves when a newer request has shed this body.
    pub async fn evicted(&self) {
        if self
            .budget
            .lock()
            .readers
            .get(&self.key)
            .is_some_and(|r| r.marked)
        {
            return;
        }
        self.shed.notified().await;
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let mut state = self.budget.lock();
        if let Some(reader) = state.readers.remove(&self.key) {
            state.used -= reader.held;
            self.budget.inner.gauge.set(state.used as i64);
        }
        drop(state);
        self.budget.inner.released.notify_waiters();
    }
}

/// The answer as the connection sends it, in pieces of at most [`ANSWER_CHUNK`]: HTTP/2
/// asks for the next piece only when the client's window has room, so unsent bytes stay here,
/// counted, rather than in the connection's buffers.
pub struct AnswerBody {
    _hold: Hold,
    slot: Slot,
    left: usize,
}

/// The largest piece of an answer handed to the connection at once.
pub const ANSWER_CHUNK: usize = 64 * 1024;

/// An answer shed before it was sent.
#[derive(Debug, thiserror::Error)]
#[error("the answer was not read and newer requests needed its room in the body budget")]
pub struct AnswerShed;

impl http_body::Body for AnswerBody {
    type Data = bytes::Bytes;
    type Error = AnswerShed;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, AnswerShed>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let Some(rest) = slot.as_mut() else {
            drop(slot);
            self.left = 0;
            return std::task::Poll::Ready(Some(Err(AnswerShed)));
        };
        let piece = if rest.len() <= ANSWER_CHUNK {
            std::mem::take(rest)
        } else {
            rest.split_to(ANSWER_CHUNK)
        };
        drop(slot);
        self.left -= piece.len();
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(piece))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_are_reserved_and_released_with_the_hold() {
        let budget = BodyBudget::new(100);
        let a = budget.enter();
        a.reserve(60).await.unwrap();
        assert_eq!(budget.used(), 60);
        drop(a);
        assert_eq!(budget.used(), 0);
    }

    #[tokio::test]
    async fn a_newer_body_sheds_the_oldest_and_gets_its_room() {
        let budget = BodyBudget::new(100);
        let old = budget.enter();
        old.reserve(80).await.unwrap();
        let new = budget.enter();
        // The old body's task: it drops its bytes once shed.
        let shed = tokio::spawn(async move {
            old.evicted().await;
            drop(old);
        });
        new.reserve(50).await.unwrap();
        shed.await.unwrap();
        assert_eq!(budget.used(), 50);
        assert_eq!(budget.shed_total(), 1);
    }

    #[tokio::test]
    async fn a_body_over_the_whole_budget_with_nothing_older_is_refused() {
        let budget = BodyBudget::new(100);
        let only = budget.enter();
        only.reserve(60).await.unwrap();
        assert_eq!(only.reserve(60).await, Err(Shed::NoRoom));
        assert_eq!(budget.used(), 60, "the refused bytes were not taken");
    }

    async fn drain(body: AnswerBody) -> Result<Vec<u8>, AnswerShed> {
        use http_body_util::BodyExt;
        Ok(body.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn an_answer_stays_counted_until_it_is_sent_and_comes_out_whole() {
        let budget = BodyBudget::new(1 << 20);
        let hold = budget.enter();
        hold.reserve(1000).await.unwrap();
        let text: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let body = hold.answer(bytes::Bytes::from(text.clone()));
        assert_eq!(
            budget.used(),
            200_000,
            "the request's 1000 bytes traded for the answer's"
        );
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(200_000));
        assert_eq!(drain(body).await.unwrap(), text);
        assert_eq!(budget.used(), 0, "released once sent");
    }

    #[tokio::test]
    async fn an_unread_answer_is_shed_for_a_newer_request_and_its_bytes_freed_at_once() {
        let budget = BodyBudget::new(100);
        let old = budget.enter();
        old.reserve(10).await.unwrap();
        // Its client never reads: nobody polls this body while the newer request arrives.
        let unread = old.answer(bytes::Bytes::from(vec![7u8; 90]));
        assert_eq!(budget.used(), 90);
        let new = budget.enter();
        new.reserve(50).await.unwrap();
        assert_eq!(budget.used(), 50, "the unread answer's 90 bytes were freed");
        assert_eq!(budget.shed_total(), 1);
        assert!(
            drain(unread).await.is_err(),
            "its stream ends in an error (a reset)"
        );
    }

    #[tokio::test]
    async fn an_older_body_never_sheds_a_newer_one() {
        let budget = BodyBudget::new(100);
        let older = budget.enter();
        let newer = budget.enter();
        newer.reserve(80).await.unwrap();
        assert_eq!(older.reserve(50).await, Err(Shed::NoRoom));
        assert_eq!(budget.used(), 80);
    }
}
