//! A drain's events as a `batch` item holds them: most of a recording. Each event is an
//! array. Its time is the difference from the event before (the first from 0). The
//! hot kinds (reads, writes, an io worker's reads, USDT block probes) are flat numbers
//! after a small tag, a read's or write's offset as the difference from where the last
//! one on that fd ended, a block as the difference from the block before: a scan is then
//! mostly the same few bytes over and over, which zstd folds away, and decoding needs no
//! buffering through serde's `Content` (an internally tagged, flattened enum does). The
//! other kinds keep their tagged object as json.md's `-d` records have them.
//!
//! ```text
//! [d, pid, {"event": …, …}]                                   any kind
//! [d, pid, 1, syscall, fd, offset±, requested, result]        read
//! [d, pid, 2, syscall, fd, offset±, requested, result]        write
//! [d, pid, 3, syscall, fd, offset±, requested, result, owner] io worker read
//! [d, pid, 4, probe, spc, db, relfilenode, fork, block±, nblocks, hit, write, backend]
//! ```
//!
//! Format 1 wrote each event as `{"d", "p", "event", …}`: read as well, element by element.
//! Format 5 writes the same arrays without `d` ([`EventsUntimed`]): the times are kept
//! apart, for the whole frame (`times.rs`), and given back in order ([`EventsSeed`]).

use crate::pgdata::relfile::{Fork, RelFileLocator};
use crate::trace::{BlockIo, BlockProbe, Event, EventKind, Pid, Syscall};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, SerializeTuple};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::HashMap;

/// A drain's events (see the module's comment for how they are written).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Events(pub Vec<Event>);

/// [`Events`], borrowed, for writing, each with its time (formats 2 to 4).
#[derive(Debug, Clone, Copy)]
pub struct EventsRef<'a>(pub &'a [Event]);

/// [`Events`], borrowed, for writing without their times (format 5: the frame keeps
/// them apart).
#[derive(Debug, Clone, Copy)]
pub struct EventsUntimed<'a>(pub &'a [Event]);

/// A frame's times, given to its events in order (format 5).
#[derive(Debug)]
pub struct Times<'a> {
    ts: &'a [u64],
    next: usize,
}

impl<'a> Times<'a> {
    pub fn new(ts: &'a [u64]) -> Times<'a> {
        Times { ts, next: 0 }
    }

    fn take(&mut self) -> Option<u64> {
        let t = self.ts.get(self.next).copied();
        self.next += 1;
        t
    }

    /// Every time was given to an event.
    pub fn all_taken(&self) -> bool {
        self.next == self.ts.len()
    }
}

const READ: u8 = 1;
const WRITE: u8 = 2;
const IO_WORKER_READ: u8 = 3;
const BLOCK: u8 = 4;

/// What the differences are taken from, the same on both sides.
#[derive(Default)]
struct Context {
    ts: u64,
    /// Where the last read (or write: a backend writes back pages behind its reads on the
    /// same fd) on (pid, fd) with a known offset ended, by tag.
    ends: HashMap<(Pid, i32, u8), u64>,
    block: u32,
}

impl Context {
    fn offset_out(&mut self, key: (Pid, i32, u8), offset: Option<u64>, result: i64) -> Option<i64> {
        let o = offset?;
        let base = self.ends.get(&key).copied().unwrap_or(0);
        self.ends.insert(key, o.wrapping_add(result.max(0) as u64));
        Some(o.wrapping_sub(base) as i64)
    }

    fn offset_in(&mut self, key: (Pid, i32, u8), diff: Option<i64>, result: i64) -> Option<u64> {
        let d = diff?;
        let base = self.ends.get(&key).copied().unwrap_or(0);
        let o = base.wrapping_add(d as u64);
        self.ends.insert(key, o.wrapping_add(result.max(0) as u64));
        Some(o)
    }
}

/// A read or write: `[d, p, tag, syscall, fd, offset±, requested, result(, owner)]`.
struct Io {
    /// None: untimed (format 5).
    d: Option<i64>,
    p: Pid,
    tag: u8,
    syscall: Syscall,
    fd: i32,
    off: Option<i64>,
    requested: u64,
    result: i64,
    owner: Option<Pid>,
}

impl Serialize for Io {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(
            7 + usize::from(self.d.is_some()) + usize::from(self.owner.is_some()),
        )?;
        if let Some(d) = &self.d {
            t.serialize_element(d)?;
        }
        t.serialize_element(&self.p)?;
        t.serialize_element(&self.tag)?;
        t.serialize_element(&self.syscall)?;
        t.serialize_element(&self.fd)?;
        t.serialize_element(&self.off)?;
        t.serialize_element(&self.requested)?;
        t.serialize_element(&self.result)?;
        if let Some(o) = &self.owner {
            t.serialize_element(o)?;
        }
        t.end()
    }
}

/// `[d, p, 4, probe, spc, db, relfilenode, fork, block±, nblocks, hit, write, backend]`.
struct Block<'a> {
    d: Option<i64>,
    p: Pid,
    b: &'a BlockIo,
    block: i64,
}

impl Serialize for Block<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.b;
        let mut t = s.serialize_tuple(12 + usize::from(self.d.is_some()))?;
        if let Some(d) = &self.d {
            t.serialize_element(d)?;
        }
        t.serialize_element(&self.p)?;
        t.serialize_element(&BLOCK)?;
        t.serialize_element(&b.probe)?;
        t.serialize_element(&b.rel.spc_oid)?;
        t.serialize_element(&b.rel.db_oid)?;
        t.serialize_element(&b.rel.rel_number)?;
        t.serialize_element(&b.fork.number())?;
        t.serialize_element(&self.block)?;
        t.serialize_element(&b.nblocks)?;
        t.serialize_element(&b.hit)?;
        t.serialize_element(&b.write)?;
        t.serialize_element(&b.rel.backend.map_or(-1, i64::from))?;
        t.end()
    }
}

impl Serialize for EventsRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_events(self.0, true, s)
    }
}

impl Serialize for EventsUntimed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        write_events(self.0, false, s)
    }
}

fn write_events<S: Serializer>(events: &[Event], timed: bool, s: S) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(events.len()))?;
    let mut cx = Context::default();
    for e in events {
        // Tracers stamp some calls by clock tick: a time may go back a little.
        let d = timed.then(|| e.ts_ns.wrapping_sub(cx.ts) as i64);
        cx.ts = e.ts_ns;
        let p = e.pid;
        let io = |cx: &mut Context, tag, syscall, fd, offset, requested, result, owner| Io {
            d,
            p,
            tag,
            syscall,
            fd,
            off: cx.offset_out((p, fd, tag), offset, result),
            requested,
            result,
            owner,
        };
        match &e.kind {
            &EventKind::Read {
                syscall,
                fd,
                offset,
                requested,
                result,
            } => seq.serialize_element(&io(
                &mut cx, READ, syscall, fd, offset, requested, result, None,
            ))?,
            &EventKind::Write {
                syscall,
                fd,
                offset,
                requested,
                result,
            } => seq.serialize_element(&io(
                &mut cx, WRITE, syscall, fd, offset, requested, result, None,
            ))?,
            &EventKind::IoWorkerRead {
                owner,
                syscall,
                fd,
                offset,
                requested,
                result,
            } => seq.serialize_element(&io(
                &mut cx,
                IO_WORKER_READ,
                syscall,
                fd,
                offset,
                requested,
                result,
                Some(owner),
            ))?,
            EventKind::BlockIo(b) => {
                let block = i64::from(b.block) - i64::from(cx.block);
                cx.block = b.block;
                seq.serialize_element(&Block { d, p, b, block })?
            }
            k => match d {
                Some(d) => seq.serialize_element(&(d, p, k))?,
                None => seq.serialize_element(&(p, k))?,
            },
        }
    }
    seq.end()
}

impl Serialize for Events {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EventsRef(&self.0).serialize(s)
    }
}

impl<'de> Deserialize<'de> for Events {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Events, D::Error> {
        d.deserialize_seq(EventsVisitor(None))
    }
}

/// Format 5's events, without their times: these give them, in order.
pub struct EventsSeed<'a, 'b>(pub &'a mut Times<'b>);

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_> {
    type Value = Events;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Events, D::Error> {
        d.deserialize_seq(EventsVisitor(Some(self.0)))
    }
}

struct EventsVisitor<'a, 'b>(Option<&'a mut Times<'b>>);

impl<'de> Visitor<'de> for EventsVisitor<'_, '_> {
    type Value = Events;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Events, A::Error> {
        let mut cx = Context::default();
        // Bounded: a hostile hint must not allocate.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(e) = seq.next_element_seed(EventSeed {
            cx: &mut cx,
            times: self.0.as_deref_mut(),
        })? {
            out.push(e);
        }
        Ok(Events(out))
    }
}

struct EventSeed<'a, 'b> {
    cx: &'a mut Context,
    /// Format 5: the times, not in the arrays.
    times: Option<&'a mut Times<'b>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_, '_> {
    type Value = Event;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Event, D::Error> {
        d.deserialize_any(self)
    }
}

/// Format 1's event.
#[derive(Deserialize)]
struct EvV1 {
    d: i64,
    p: Pid,
    #[serde(flatten)]
    k: EventKind,
}

/// An event's third element: a hot kind's tag, or any kind's object.
enum Third {
    Tag(u8),
    Kind(EventKind),
}

impl<'de> Deserialize<'de> for Third {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Third, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Third;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a tag or an event")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Third, E> {
                u8::try_from(v)
                    .map(Third::Tag)
                    .map_err(|_| E::custom(format!("event tag {v} unknown")))
            }
            fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Third, A::Error> {
                EventKind::deserialize(de::value::MapAccessDeserializer::new(m)).map(Third::Kind)
            }
        }
        d.deserialize_any(V)
    }
}

fn next<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(seq: &mut A, i: usize) -> Result<T, A::Error> {
    seq.next_element()?
        .ok_or_else(|| de::Error::invalid_length(i, &"a whole event"))
}

impl<'de> Visitor<'de> for EventSeed<'_, '_> {
    type Value = Event;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event")
    }

    fn visit_map<A: MapAccess<'de>>(self, m: A) -> Result<Event, A::Error> {
        if self.times.is_some() {
            return Err(de::Error::custom("a format 1 event in a format 5 frame"));
        }
        let e = EvV1::deserialize(de::value::MapAccessDeserializer::new(m))?;
        self.cx.ts = self.cx.ts.wrapping_add(e.d as u64);
        Ok(Event {
            ts_ns: self.cx.ts,
            pid: e.p,
            kind: e.k,
        })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Event, A::Error> {
        let cx = self.cx;
        // The elements after the time: from 0 in format 5, whose arrays have none.
        let o = match self.times {
            Some(times) => {
                cx.ts = times
                    .take()
                    .ok_or_else(|| de::Error::custom("more events than times in a frame"))?;
                0
            }
            None => {
                let d: i64 = next(&mut seq, 0)?;
                cx.ts = cx.ts.wrapping_add(d as u64);
                1
            }
        };
        let pid: Pid = next(&mut seq, o)?;
        let kind = match next::<Third, _>(&mut seq, o + 1)? {
            Third::Kind(k) => k,
            Third::Tag(t @ (READ | WRITE | IO_WORKER_READ)) => {
                let syscall: Syscall = next(&mut seq, o + 2)?;
                let fd: i32 = next(&mut seq, o + 3)?;
                let off: Option<i64> = next(&mut seq, o + 4)?;
                let requested: u64 = next(&mut seq, o + 5)?;
                let result: i64 = next(&mut seq, o + 6)?;
                let offset = cx.offset_in((pid, fd, t), off, result);
                match t {
                    READ => EventKind::Read {
                        syscall,
                        fd,
                        offset,
                        requested,
                        result,
                    },
                    WRITE => EventKind::Write {
                        syscall,
                        fd,
                        offset,
                        requested,
                        result,
                    },
                    _ => EventKind::IoWorkerRead {
                        owner: next(&mut seq, o + 7)?,
                        syscall,
                        fd,
                        offset,
                        requested,
                        result,
                    },
                }
            }
            Third::Tag(BLOCK) => {
                let probe: BlockProbe = next(&mut seq, o + 2)?;
                let spc_oid: u32 = next(&mut seq, o + 3)?;
                let db_oid: u32 = next(&mut seq, o + 4)?;
                let rel_number: u32 = next(&mut seq, o + 5)?;
                let fork: i32 = next(&mut seq, o + 6)?;
                let diff: i64 = next(&mut seq, o + 7)?;
                let block = i64::from(cx.block)
                    .checked_add(diff)
                    .and_then(|b| u32::try_from(b).ok())
                    .ok_or_else(|| de::Error::custom("a block number out of range"))?;
                cx.block = block;
                let nblocks: u32 = next(&mut seq, o + 8)?;
                let hit: Option<bool> = next(&mut seq, o + 9)?;
                let write: bool = next(&mut seq, o + 10)?;
                let backend: i64 = next(&mut seq, o + 11)?;
                EventKind::BlockIo(BlockIo {
                    probe,
                    rel: RelFileLocator {
                        spc_oid,
                        db_oid,
                        rel_number,
                        backend: u32::try_from(backend).ok(),
                    },
                    fork: Fork::from_number(fork.into()).ok_or_else(|| {
                        de::Error::custom(format!("fork {fork} is not a ForkNumber"))
                    })?,
                    block,
                    nblocks,
                    hit,
                    write,
                })
            }
            Third::Tag(t) => return Err(de::Error::custom(format!("event tag {t} unknown"))),
        };
        // Anything after is a newer writer's: an error, as an unknown tag is.
        if seq.next_element::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("an event with more fields than its kind"));
        }
        Ok(Event {
            ts_ns: cx.ts,
            pid,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(ts: u64, pid: Pid, kind: EventKind) -> Event {
        Event {
            ts_ns: ts,
            pid,
            kind,
        }
    }

    fn sample() -> Vec<Event> {
        let read = |off: Option<u64>, result| EventKind::Read {
            syscall: Syscall::Pread64,
            fd: 24,
            offset: off,
            requested: 8192,
            result,
        };
        let block = |probe, block| {
            EventKind::BlockIo(BlockIo {
                probe,
                rel: RelFileLocator {
                    spc_oid: 1663,
                    db_oid: 5,
                    rel_number: 16388,
                    backend: None,
                },
                fork: Fork::Main,
                block,
                nblocks: 1,
                hit: Some(false),
                write: false,
            })
        };
        vec![
            ev(1_000, 7, read(Some(0), 8192)),
            ev(1_500, 7, read(Some(8192), 8192)),
            // Back in time, back in the file, an error, no offset.
            ev(1_400, 7, read(Some(0), -5)),
            ev(1_600, 7, read(None, 100)),
            ev(
                1_700,
                8,
                EventKind::Write {
                    syscall: Syscall::Write,
                    fd: 24,
                    offset: Some(u64::MAX),
                    requested: 1,
                    result: 1,
                },
            ),
            ev(
                1_800,
                9,
                EventKind::IoWorkerRead {
                    owner: 7,
                    syscall: Syscall::Preadv,
                    fd: 3,
                    offset: Some(1 << 40),
                    requested: 131072,
                    result: 131072,
                },
            ),
            ev(1_900, 7, block(BlockProbe::BufferReadStart, u32::MAX)),
            ev(1_901, 7, block(BlockProbe::BufferReadDone, 0)),
            ev(
                2_000,
                7,
                EventKind::Open {
                    syscall: Syscall::Openat,
                    dirfd: None,
                    path: "base/5/16388".into(),
                    flags: 2,
                    fd: 24,
                },
            ),
            ev(u64::MAX, 7, EventKind::Close { fd: 24 }),
        ]
    }

    #[test]
    fn events_come_back_as_they_were() {
        let evs = sample();
        let json = serde_json::to_string(&EventsRef(&evs)).unwrap();
        let back: Events = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0, evs, "{json}");
        // The second read's offset is where the first ended: 0 written.
        assert!(
            json.contains("[500,7,1,\"pread64\",24,0,8192,8192]"),
            "{json}"
        );
    }

    proptest::proptest! {
        /// Any mix of hot kinds on a few pids and fds, times and offsets anywhere.
        #[test]
        fn any_events_come_back(evs in proptest::collection::vec(
            (proptest::prelude::any::<u64>(), 1u32..4, 0i32..3, 0u8..4,
             proptest::option::of(proptest::prelude::any::<u64>()), -5i64..9000,
             proptest::prelude::any::<u32>()),
            0..60,
        )) {
            let evs: Vec<Event> = evs
                .into_iter()
                .map(|(ts, pid, fd, k, offset, result, block)| {
                    let kind = match k {
                        0 => EventKind::Read { syscall: Syscall::Read, fd, offset, requested: 8192, result },
                        1 => EventKind::Write { syscall: Syscall::Pwritev, fd, offset, requested: 1, result },
                        2 => EventKind::IoWorkerRead { owner: 1, syscall: Syscall::Preadv, fd, offset, requested: 0, result },
                        _ => EventKind::BlockIo(BlockIo {
                            probe: BlockProbe::SmgrWriteDone,
                            rel: RelFileLocator { spc_oid: 1, db_oid: 2, rel_number: 3, backend: Some(4) },
                            fork: Fork::Vm,
                            block,
                            nblocks: 2,
                            hit: None,
                            write: true,
                        }),
                    };
                    ev(ts, pid as Pid, kind)
                })
                .collect();
            let json = serde_json::to_string(&EventsRef(&evs)).unwrap();
            let back: Events = serde_json::from_str(&json).unwrap();
            proptest::prop_assert_eq!(&back.0, &evs);
            // Format 5: without their times, given back from the frame's.
            let json = serde_json::to_string(&EventsUntimed(&evs)).unwrap();
            let ts: Vec<u64> = evs.iter().map(|e| e.ts_ns).collect();
            let mut times = Times::new(&ts);
            let mut d = serde_json::Deserializer::from_str(&json);
            let back = EventsSeed(&mut times).deserialize(&mut d).unwrap();
            proptest::prop_assert!(times.all_taken());
            proptest::prop_assert_eq!(back.0, evs);
        }
    }

    #[test]
    fn untimed_events_take_the_frames_times() {
        let evs = sample();
        let json = serde_json::to_string(&EventsUntimed(&evs)).unwrap();
        assert!(
            json.starts_with("[[7,1,\"pread64\",24,0,8192,8192]"),
            "{json}"
        );
        let ts: Vec<u64> = evs.iter().map(|e| e.ts_ns).collect();
        let mut times = Times::new(&ts);
        let mut d = serde_json::Deserializer::from_str(&json);
        assert_eq!(EventsSeed(&mut times).deserialize(&mut d).unwrap().0, evs);
        // Too few times, and a format 1 object, are errors.
        let mut few = Times::new(&ts[..3]);
        let mut d = serde_json::Deserializer::from_str(&json);
        assert!(EventsSeed(&mut few).deserialize(&mut d).is_err());
        let v1 = r#"[{"d":5,"p":7,"event":"close","fd":3}]"#;
        let mut d = serde_json::Deserializer::from_str(v1);
        assert!(EventsSeed(&mut Times::new(&[1]))
            .deserialize(&mut d)
            .is_err());
    }

    #[test]
    fn format_1_events_are_read() {
        let v1 = r#"[{"d":5,"p":7,"event":"read","syscall":"pread64","fd":3,"offset":8192,"requested":8192,"result":8192},
                     {"d":2,"p":7,"event":"close","fd":3}]"#;
        let back: Events = serde_json::from_str(v1).unwrap();
        assert_eq!(back.0.len(), 2);
        assert_eq!(back.0[1].ts_ns, 7);
        assert!(matches!(
            back.0[0].kind,
            EventKind::Read {
                offset: Some(8192),
                ..
            }
        ));
    }

    #[test]
    fn hostile_events_are_errors() {
        for bad in [
            "[[1,7,9]]",
            "[[1,7,1,\"pread64\",3]]",
            "[[1,7,1,\"pread64\",3,0,1,1,5]]",
            "[[1,7,4,\"buffer_read_start\",1,2,3,0,-1,1,null,false,-1]]",
            "[[1,7,4,\"buffer_read_start\",1,2,3,9,0,1,null,false,-1]]",
            "[[1,7,\"x\"]]",
            "[[1,7,4,\"buffer_read_start\",1,2,3,0,9223372036854775807,1,null,false,-1]]",
            "[1]",
        ] {
            assert!(serde_json::from_str::<Events>(bad).is_err(), "{bad}");
        }
    }
}
