//! A ring buffer of an opt-in program (`--io-latency`, `--exact-waits`) whose records are
//! decoded as they are consumed, kept until the tracer's next drain, with a count of the
//! garbled ones.

use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use libbpf_rs::{MapCore, RingBuffer, RingBufferBuilder};

use crate::trace::Event;

pub(super) struct DecodedRing {
    ring: RingBuffer<'static>,
    decoded: Arc<Mutex<Vec<Event>>>,
    garbled: Arc<Mutex<u64>>,
}

impl DecodedRing {
    /// `map`'s records through `decode`; errors name the option (`what`).
    pub(super) fn open(
        map: &dyn MapCore,
        what: &str,
        decode: impl Fn(&[u8]) -> Option<Event> + 'static,
    ) -> anyhow::Result<DecodedRing> {
        let decoded = Arc::new(Mutex::new(Vec::new()));
        let garbled = Arc::new(Mutex::new(0u64));
        let (sink, bad) = (Arc::clone(&decoded), Arc::clone(&garbled));
        let mut builder = RingBufferBuilder::new();
        builder
            .add(map, move |data: &[u8]| {
                match decode(data) {
                    Some(ev) => {
                        if let Ok(mut v) = sink.lock() {
                            v.push(ev);
                        }
                    }
                    None => {
                        if let Ok(mut n) = bad.lock() {
                            *n += 1;
                        }
                    }
                }
                0
            })
            .map_err(|e| anyhow!("{what}: cannot use its ring buffer ({e})"))?;
        let ring = builder
            .build()
            .map_err(|e| anyhow!("{what}: cannot map its ring buffer ({e})"))?;
        Ok(DecodedRing {
            ring,
            decoded,
            garbled,
        })
    }

    /// The records decoded since the last drain, and how many were garbled.
    pub(super) fn drain(&self, out: &mut Vec<Event>) -> u64 {
        let _ = self.ring.consume_raw();
        if let Ok(mut v) = self.decoded.lock() {
            out.append(&mut v);
        }
        self.garbled
            .lock()
            .map(|mut n| std::mem::take(&mut *n))
            .unwrap_or_default()
    }
}
