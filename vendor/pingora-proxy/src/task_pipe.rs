// triage patch (PATCHES.md 9): this whole file.

//! The pipes between the two halves of an HTTP/1 proxied request, and the join that drives
//! both halves.
//!
//! `proxy_1to1` runs the half that talks to the downstream and the half that talks to the
//! upstream as two futures of one task, and they pass `HttpTask`s to each other. 0.9.1 used two
//! tokio mpsc channels for that: per request two allocated channels (each with a block of 32
//! slots), their semaphores, and a wake-up of the task by itself whenever one half sent to the
//! other, which made tokio poll the whole connection's future a third time per request.
//!
//! Here both pipes live on `proxy_1to1`'s stack and [`join_halves`] polls the halves again, in
//! place, whenever one of them moved a task through a pipe (or closed its end) during a pass:
//! the only party a pipe end can wait for is the other half of the same join, so no waker is
//! ever stored or woken. A half that waits on the network is woken by the network as before,
//! and the join then polls both halves.
//!
//! The pipe ends must therefore only be used inside [`join_halves`]' two futures; a pipe end
//! awaited anywhere else would never be woken.

use std::fmt;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::Poll;

/// Two bounded pipes, one each way, and the flag that tells [`join_halves`] that a task moved.
pub(crate) struct Pipes<T> {
    /// Whether a task was sent or received, or a pipe end dropped, since the join last looked.
    moved: AtomicBool,
    to_upstream: Pipe<T>,
    to_downstream: Pipe<T>,
}

struct Pipe<T> {
    // Never contended: both ends are polled by the one task that runs the join. A lock keeps
    // the pipe `Sync` (the halves hold references to it across awaits in a `Send` future).
    state: Mutex<State<T>>,
}

struct State<T> {
    queue: Ring<T>,
    /// Slots promised to a [`Permit`] not yet used.
    reserved: usize,
    sender_open: bool,
    receiver_open: bool,
}

impl<T> Pipe<T> {
    fn new(capacity: usize) -> Self {
        Pipe {
            state: Mutex::new(State {
                queue: Ring::new(capacity),
                reserved: 0,
                sender_open: true,
                receiver_open: true,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut State<T>) -> R) -> R {
        // A poisoned lock only means a half panicked while holding it; the state is a plain
        // queue and counters, still consistent, so go on with it.
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut state)
    }
}

impl<T> Pipes<T> {
    /// Two pipes of `capacity` tasks each.
    pub(crate) fn new(capacity: usize) -> Self {
        Pipes {
            moved: AtomicBool::new(false),
            to_upstream: Pipe::new(capacity),
            to_downstream: Pipe::new(capacity),
        }
    }

    /// The ends the downstream half holds: it sends to the upstream half and receives from it.
    pub(crate) fn downstream_ends(&self) -> (Sender<'_, T>, Receiver<'_, T>) {
        (
            Sender {
                pipe: &self.to_upstream,
                moved: &self.moved,
            },
            Receiver {
                pipe: &self.to_downstream,
                moved: &self.moved,
            },
        )
    }

    /// The ends the upstream half holds.
    pub(crate) fn upstream_ends(&self) -> (Sender<'_, T>, Receiver<'_, T>) {
        (
            Sender {
                pipe: &self.to_downstream,
                moved: &self.moved,
            },
            Receiver {
                pipe: &self.to_upstream,
                moved: &self.moved,
            },
        )
    }
}

/// A queue of at most `capacity` tasks kept in place: a pipe allocates nothing.
struct Ring<T> {
    slots: [Option<T>; MAX_CAPACITY],
    capacity: usize,
    head: usize,
    len: usize,
}

/// The most tasks a pipe holds; pingora-proxy's pipes hold `TASK_BUFFER_SIZE` (4).
const MAX_CAPACITY: usize = 8;

impl<T> Ring<T> {
    fn new(capacity: usize) -> Self {
        Ring {
            slots: std::array::from_fn(|_| None),
            capacity: capacity.clamp(1, MAX_CAPACITY),
            head: 0,
            len: 0,
        }
    }

    fn capacity(&self) -> usize {
        self.capacity
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Callers check the room first (`len() + reserved < capacity()`); a task pushed into a
    /// full ring would be dropped, never overwrite one.
    fn push_back(&mut self, task: T) {
        if self.len < self.capacity {
            self.slots[(self.head + self.len) % self.capacity] = Some(task);
            self.len += 1;
        }
    }

    fn pop_front(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        let task = self.slots[self.head].take();
        self.head = (self.head + 1) % self.capacity;
        self.len -= 1;
        task
    }

    fn take_all(&mut self) -> Vec<T> {
        std::iter::from_fn(|| self.pop_front()).collect()
    }
}

/// The receiving end of a pipe is gone.
#[derive(Debug)]
pub(crate) struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task pipe's receiver is closed")
    }
}

impl std::error::Error for Closed {}

/// Why [`Sender::try_reserve`] gave no permit.
#[derive(Debug)]
pub(crate) enum TryReserveError {
    Full,
    Closed,
}

impl fmt::Display for TryReserveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryReserveError::Full => f.write_str("the task pipe is full"),
            TryReserveError::Closed => f.write_str("the task pipe's receiver is closed"),
        }
    }
}

impl std::error::Error for TryReserveError {}

pub(crate) struct Sender<'a, T> {
    pipe: &'a Pipe<T>,
    moved: &'a AtomicBool,
}

impl<'a, T> Sender<'a, T> {
    /// A slot for one task, if there is room now.
    pub(crate) fn try_reserve(&self) -> Result<Permit<'_, 'a, T>, TryReserveError> {
        self.pipe.with(|state| {
            if !state.receiver_open {
                Err(TryReserveError::Closed)
            } else if state.queue.len() + state.reserved >= state.queue.capacity() {
                Err(TryReserveError::Full)
            } else {
                state.reserved += 1;
                Ok(Permit { sender: self })
            }
        })
    }

    /// A slot for one task, once there is room; fails when the receiver is gone.
    pub(crate) async fn reserve(&self) -> Result<Permit<'_, 'a, T>, Closed> {
        poll_fn(|_| match self.try_reserve() {
            Ok(permit) => Poll::Ready(Ok(permit)),
            Err(TryReserveError::Closed) => Poll::Ready(Err(Closed)),
            // The receiver makes room in the other half of the join, which polls this again.
            Err(TryReserveError::Full) => Poll::Pending,
        })
        .await
    }

    /// Sends `task` once there is room; fails, dropping it, when the receiver is gone.
    pub(crate) async fn send(&self, task: T) -> Result<(), Closed> {
        self.reserve().await?.send(task);
        Ok(())
    }

    /// Whether the receiver is gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.pipe.with(|state| !state.receiver_open)
    }
}

impl<T> Drop for Sender<'_, T> {
    fn drop(&mut self) {
        self.pipe.with(|state| state.sender_open = false);
        // The receiver learns of it (`recv` gives `None`) at the join's next pass.
        self.moved.store(true, Ordering::Relaxed);
    }
}

/// A slot reserved in a pipe.
pub(crate) struct Permit<'s, 'a, T> {
    sender: &'s Sender<'a, T>,
}

impl<T> Permit<'_, '_, T> {
    pub(crate) fn send(self, task: T) {
        let sender = self.sender;
        // The slot is used, not released: the permit's drop is skipped.
        std::mem::forget(self);
        sender.pipe.with(|state| {
            state.reserved -= 1;
            if state.receiver_open {
                state.queue.push_back(task);
            }
        });
        sender.moved.store(true, Ordering::Relaxed);
    }
}

impl<T> Drop for Permit<'_, '_, T> {
    fn drop(&mut self) {
        // Unused: the slot is free again. Not a move the join must re-poll for: only the
        // sender reserves, and it is in the half that just dropped the permit, which goes on.
        self.sender.pipe.with(|state| state.reserved -= 1);
    }
}

impl<T> fmt::Debug for Permit<'_, '_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Permit")
    }
}

pub(crate) struct Receiver<'a, T> {
    pipe: &'a Pipe<T>,
    moved: &'a AtomicBool,
}

impl<T> Receiver<'_, T> {
    /// The next task, if one is queued: `Ready(None)` once the sender is gone and the queue
    /// is empty, `Pending` while the sender may still send.
    fn poll_recv(&mut self) -> Poll<Option<T>> {
        let polled = self.pipe.with(|state| match state.queue.pop_front() {
            Some(task) => Poll::Ready(Some(task)),
            None if !state.sender_open => Poll::Ready(None),
            None => Poll::Pending,
        });
        if matches!(polled, Poll::Ready(Some(_))) {
            // Room was made for a sender that may be waiting.
            self.moved.store(true, Ordering::Relaxed);
        }
        polled
    }

    /// The next task; `None` once the sender is gone and every task sent was received.
    pub(crate) async fn recv(&mut self) -> Option<T> {
        poll_fn(|_| self.poll_recv()).await
    }

    /// The next task if one is queued now, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Option<T>> {
        match self.poll_recv() {
            Poll::Ready(task) => Some(task),
            Poll::Pending => None,
        }
    }
}

impl<T> Drop for Receiver<'_, T> {
    fn drop(&mut self) {
        // Tasks still queued are dropped with the receiver, as tokio's channel does.
        let queued = self.pipe.with(|state| {
            state.receiver_open = false;
            state.queue.take_all()
        });
        drop(queued);
        self.moved.store(true, Ordering::Relaxed);
    }
}

/// Runs both halves to completion, or until one fails (then the other is dropped), like
/// `tokio::try_join!`; both are polled again in the same poll while either moved a task
/// through `pipes`, which is what wakes a half waiting on a pipe.
pub(crate) async fn join_halves<T, A, B, RA, RB, E>(
    pipes: &Pipes<T>,
    a: A,
    b: B,
) -> Result<(RA, RB), E>
where
    A: Future<Output = Result<RA, E>>,
    B: Future<Output = Result<RB, E>>,
{
    let mut a = pin!(a);
    let mut b = pin!(b);
    let mut a_done = None;
    let mut b_done = None;
    poll_fn(|cx| loop {
        pipes.moved.store(false, Ordering::Relaxed);
        if a_done.is_none() {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                match r {
                    Ok(v) => a_done = Some(v),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        if b_done.is_none() {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                match r {
                    Ok(v) => b_done = Some(v),
                    Err(e) => return Poll::Ready(Err(e)),
                }
            }
        }
        match (a_done.take(), b_done.take()) {
            (Some(ra), Some(rb)) => return Poll::Ready(Ok((ra, rb))),
            (ra, rb) => (a_done, b_done) = (ra, rb),
        }
        if !pipes.moved.load(Ordering::Relaxed) {
            return Poll::Pending;
        }
    })
    .await
}
