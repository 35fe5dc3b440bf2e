//! A publisher for many producing threads: a mutex around the single one.

use std::sync::Arc;

use bytemuck::NoUninit;

use crate::bytes::BytePublisher;
use crate::error::TooLarge;
use crate::ring::Publisher;

/// A clonable publisher that several threads can publish through.
///
/// The ring stays single-producer: each publish takes a `parking_lot` mutex
/// around the one [`Publisher`] (or [`BytePublisher`]). Sequence numbers are
/// assigned in the order the lock is taken. Uncontended, the lock is one
/// atomic operation each way; under contention producers wait for each other
/// (never for readers).
#[derive(Debug)]
pub struct SharedPublisher<P> {
    inner: Arc<parking_lot::Mutex<P>>,
}

impl<P> SharedPublisher<P> {
    /// Wraps a publisher.
    pub fn new(publisher: P) -> Self {
        Self {
            inner: Arc::new(parking_lot::Mutex::new(publisher)),
        }
    }

    /// Locks the publisher, for several publishes in a row or for its
    /// other methods. Hold the guard briefly: other producers wait on it.
    pub fn lock(&self) -> parking_lot::MutexGuard<'_, P> {
        self.inner.lock()
    }
}

impl<P> Clone for SharedPublisher<P> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T: NoUninit> SharedPublisher<Publisher<T>> {
    /// Publishes `value`; see [`Publisher::publish`].
    pub fn publish(&self, value: T) -> u64 {
        self.inner.lock().publish(value)
    }
}

impl SharedPublisher<BytePublisher> {
    /// Publishes a copy of `payload`; see [`BytePublisher::publish`].
    pub fn publish<B: AsRef<[u8]>>(&self, payload: B) -> Result<u64, TooLarge<B>> {
        self.inner.lock().publish(payload)
    }
}
