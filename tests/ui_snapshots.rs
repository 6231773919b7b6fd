//! The screens rendered into ratatui's TestBackend from scripted events, compared with the
//! committed snapshots in tests/snapshots (update: INSTA_UPDATE=always cargo test --test
//! ui_snapshots, then review the diff). Times are scripted, so the snapshots are stable.

mod support;

use pg_trace::model::Model;
use pg_trace::process::list::{parse_title, PgCluster, PgProcess};
use pg_trace::trace::EventKind;
use pg_trace::ui::log::LogRing;
use pg_trace::ui::picker::PickerState;
use pg_trace::ui::{draw_trace, picker, Focus, ScreenState, Sort, Theme, TraceInfo};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use support::scripted::{self, *};

fn render_trace(
    w: u16,
    h: u16,
    m: &Model,
    info: &TraceInfo,
    log: &LogRing,
    st: &ScreenState,
    th: Theme,
) -> Terminal<TestBackend> {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| draw_trace(f, m, info, log, st, &th)).unwrap();
    term
}

fn text(term: &Terminal<TestBackend>) -> String {
    term.backend().to_string()
}

/// The log of a scripted run: opens, a close, an error, as the app records them.
fn scripted_log(m: &Model) -> LogRing {
    let mut log = LogRing::new();
    let mut events: Vec<_> = m
        .files
        .values()
        .map(|f| (f.opened_ns, f.fd, f.path.clone()))
        .collect();
    events.sort();
    for (ts, fd, path) in events {
        let e = open(ts, fd, &path);
        log.record(m, &e, true, false);
    }
    log.push(
        T0 + 9_000_000_000,
        pg_trace::ui::log::Level::Error,
        "pread64 sales.orders: EIO".into(),
    );
    log
}

#[test]
fn trace_screen_80x24() {
    let (m, now) = scan_model();
    let st = ScreenState::default();
    let term = render_trace(
        80,
        24,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    );
    let s = text(&term);
    assert!(s.contains("sales.orders"), "{s}");
    assert!(s.contains("orders_pkey → sales"), "{s}");
    insta::assert_snapshot!("trace_80x24", s);
}

#[test]
fn trace_screen_200x50_with_log() {
    let (m, now) = scan_model();
    let log = scripted_log(&m);
    let st = ScreenState {
        show_log: true,
        focus: Focus::Log,
        ..ScreenState::default()
    };
    let term = render_trace(200, 50, &m, &info(now), &log, &st, Theme::from_env());
    let s = text(&term);
    assert!(s.contains("WAL 000000010000000A000000F3"), "{s}");
    assert!(s.contains("temp file 2"), "{s}");
    assert!(s.contains("orders_pkey → sales.orders"), "{s}");
    assert!(s.contains("EIO"), "{s}");
    insta::assert_snapshot!("trace_200x50_log", s);
}

/// What the process does and whether it is stalled come from the model's status sample:
/// the query in the activity line, a lock wait flagged as a stall.
#[test]
fn status_and_verdict_from_the_model() {
    use pg_trace::process::status::StatusSample;
    let (mut m, now) = scan_model();
    let mut sample = StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("client backend".into()),
        state: Some("active".into()),
        query: Some("SELECT count(*) FROM sales.orders o JOIN sales.docs d USING (id)".into()),
        wait_event_type: Some("Lock".into()),
        wait_event: Some("relation".into()),
        lock_relation: Some("sales.orders".into()),
        lock_holders: vec![5151],
        sampled_at_us: 1,
        ..StatusSample::default()
    };
    sample.kernel.state = Some('S');
    apply(
        &mut m,
        ev(
            now,
            EventKind::Status {
                sample: Box::new(sample),
            },
        ),
    );
    let term = render_trace(
        120,
        30,
        &m,
        &info(now),
        &LogRing::new(),
        &ScreenState::default(),
        Theme::from_env(),
    );
    let s = text(&term);
    assert!(
        s.contains("[Lock:relation] SELECT count(*) FROM sales.orders o JOIN"),
        "{s}"
    );
    assert!(
        s.contains("⚠ waiting on a relation lock on sales.orders held by pid 5151"),
        "{s}"
    );
}

#[test]
fn help_overlay() {
    let (m, now) = scan_model();
    let st = ScreenState {
        show_help: true,
        ..ScreenState::default()
    };
    let term = render_trace(
        80,
        24,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    );
    insta::assert_snapshot!("help_80x24", text(&term));
    let term = render_trace(
        200,
        50,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    );
    let s = text(&term);
    for (k, _) in pg_trace::ui::help::TRACE_KEYS {
        assert!(s.contains(k), "help lacks {k}: {s}");
    }
}

/// The waits panel (`w`): 3 s of a backend mostly in pg_sleep, then on CPU; the kernel's
/// rows say "not measured".
#[test]
fn waits_panel() {
    use pg_trace::model::waits::Waits;
    use pg_trace::process::status::sampler::{Round, WaitEvent, WaitSample};
    use std::sync::Arc;
    let (mut m, now) = scan_model();
    m.waits = Waits::new(100.0);
    let sleep = Some(Arc::new(WaitEvent {
        class: "Timeout".into(),
        name: "PgSleep".into(),
    }));
    let q: Arc<str> = "select pg_sleep(2), count(*) from t".into();
    for i in 0..300u64 {
        let event = if i < 200 { sleep.clone() } else { None };
        m.waits.add(&Round {
            t_ns: now + i * 10_000_000,
            samples: vec![WaitSample {
                pid: m.leader,
                event,
                active: true,
                query_id: None,
                query: Some(Arc::clone(&q)),
                cpu_ns: Some(i * 3_000_000),
            }],
        });
    }
    let st = ScreenState {
        show_waits: true,
        ..ScreenState::default()
    };
    let term = render_trace(100, 40, &m, &info(now), &LogRing::new(), &st, Theme::mono());
    let s = text(&term);
    assert!(s.contains("Timeout:PgSleep"), "{s}");
    assert!(s.contains("not measured"), "{s}");
    insta::assert_snapshot!("waits_panel_100x40", s);
}

#[test]
fn final_summary() {
    let (mut m, now) = scan_model();
    apply(
        &mut m,
        ev(
            now,
            EventKind::Exit {
                code: Some(0),
                signal: None,
            },
        ),
    );
    tick(&mut m, now + 1);
    let st = ScreenState::default();
    let term = render_trace(
        80,
        24,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    );
    let s = text(&term);
    assert!(s.contains("exit code 0"), "{s}");
    insta::assert_snapshot!("summary_80x24", s);
}

#[test]
fn sort_and_filter() {
    let (m, now) = scan_model();
    let st = ScreenState {
        filter: "PKEY".into(),
        ..ScreenState::default()
    };
    let s = text(&render_trace(
        100,
        30,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    ));
    assert!(s.contains("orders_pkey"));
    assert!(!s.contains("WAL 0000"), "filtered out: {s}");
    // By name: the index comes before the table? No: labels sort "orders_pkey → …" < "pg_toast…" < "sales.orders".
    let st = ScreenState {
        sort: Sort::Name,
        ..ScreenState::default()
    };
    let rows = pg_trace::ui::files::rows(&m, &st);
    let labels: Vec<&str> = rows.iter().map(|f| f.named.label.as_str()).collect();
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(labels, sorted);
    let st = ScreenState {
        sort: Sort::Recent,
        ..ScreenState::default()
    };
    let rows = pg_trace::ui::files::rows(&m, &st);
    assert_eq!(rows[0].last_ns, m.current_file().unwrap().last_ns);
}

#[test]
fn no_color_is_monochrome() {
    let (m, now) = scan_model();
    let st = ScreenState::default();
    let colored = |t: &Terminal<TestBackend>| {
        t.backend()
            .buffer()
            .content()
            .iter()
            .filter(|c| c.fg != Color::Reset || c.bg != Color::Reset)
            .count()
    };
    let mono = render_trace(80, 24, &m, &info(now), &LogRing::new(), &st, Theme::mono());
    assert_eq!(colored(&mono), 0);
    let color = render_trace(
        80,
        24,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme { color: true },
    );
    assert!(colored(&color) > 0);
    assert_eq!(
        text(&mono),
        text(&color),
        "colour must carry no information of its own"
    );
}

#[test]
fn tiny_terminals_do_not_panic() {
    let (m, now) = scan_model();
    let log = scripted_log(&m);
    for (w, h) in [
        (1, 1),
        (10, 3),
        (39, 9),
        (40, 10),
        (41, 11),
        (60, 12),
        (80, 5),
        (300, 8),
    ] {
        for show_help in [false, true] {
            let st = ScreenState {
                show_help,
                show_log: true,
                ..ScreenState::default()
            };
            render_trace(w, h, &m, &info(now), &log, &st, Theme::from_env());
        }
        let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
        term.draw(|f| picker::draw(f, &clusters(), &PickerState::default(), &Theme::from_env()))
            .unwrap();
    }
    let s = text(&render_trace(
        30,
        8,
        &m,
        &info(now),
        &log,
        &ScreenState::default(),
        Theme::from_env(),
    ));
    assert!(s.contains("too small"), "{s}");
}

fn proc(pid: i32, title: &str, state: char, cpu: f64, rd: f64) -> PgProcess {
    PgProcess {
        pid,
        ns_pid: None,
        title: parse_title(title).unwrap(),
        state,
        cpu: Some(cpu),
        read_bps: Some(rd),
        write_bps: Some(0.0),
        memory: None,
        top_wait: None,
    }
}

fn clusters() -> Vec<PgCluster> {
    vec![
        PgCluster {
            postmaster: 900,
            container: None,
            datadir: Some("/var/lib/postgresql/15/main".into()),
            port: Some(5432),
            major: Some(15),
            server_backup: None,
            processes: vec![
                proc(
                    900,
                    "/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql/15/main",
                    'S',
                    0.0,
                    0.0,
                ),
                proc(901, "postgres: 15/main: checkpointer ", 'S', 0.0, 0.0),
                proc(902, "postgres: 15/main: background writer ", 'S', 0.3, 0.0),
                proc(
                    4242,
                    "postgres: 15/main: alice shop [local] SELECT",
                    'R',
                    97.0,
                    104_857_600.0,
                ),
                proc(
                    4250,
                    "postgres: 15/main: walsender rep [local] sending backup \"nightly\"",
                    'D',
                    12.0,
                    20_971_520.0,
                ),
                proc(
                    4260,
                    "postgres: 15/main: bob shop 10.0.0.7(51234) idle in transaction",
                    'S',
                    0.0,
                    0.0,
                ),
            ],
        },
        PgCluster {
            postmaster: 1900,
            container: None,
            datadir: Some("/srv/pg17/data".into()),
            port: Some(5433),
            major: Some(17),
            server_backup: None,
            processes: vec![
                proc(
                    1900,
                    "/usr/lib/postgresql/17/bin/postgres -D /srv/pg17/data",
                    'S',
                    0.0,
                    0.0,
                ),
                proc(
                    1950,
                    "postgres: autovacuum worker shop",
                    'R',
                    40.0,
                    5_242_880.0,
                ),
            ],
        },
        // A server in a container: host pids, with the namespace's.
        PgCluster {
            postmaster: 734200,
            container: Some("docker 4f1d2c3b4a59".into()),
            server_backup: None,
            datadir: Some("/var/lib/postgresql/data".into()),
            port: Some(5432),
            major: Some(16),
            processes: vec![
                PgProcess {
                    ns_pid: Some(1),
                    ..proc(734200, "postgres", 'S', 0.0, 0.0)
                },
                PgProcess {
                    ns_pid: Some(87),
                    ..proc(
                        734211,
                        "postgres: app orders 172.17.0.1(40112) SELECT",
                        'R',
                        12.0,
                        1_048_576.0,
                    )
                },
            ],
        },
    ]
}

#[test]
fn picker_screens() {
    let c = clusters();
    let st = PickerState::default();
    assert_eq!(
        picker::selected_pid(&c, &st),
        Some(4242),
        "the busy client backend is preselected"
    );
    let mut term = Terminal::new(TestBackend::new(80, 24)).unwrap();
    term.draw(|f| picker::draw(f, &c, &st, &Theme::from_env()))
        .unwrap();
    insta::assert_snapshot!("picker_80x24", text(&term));
    let typed = PickerState {
        filter: "1900".into(),
        ..PickerState::default()
    };
    assert_eq!(
        picker::selected_pid(&c, &typed),
        Some(1900),
        "a full pid wins"
    );
    let st = PickerState {
        filter: "walsender".into(),
        ..PickerState::default()
    };
    assert_eq!(picker::selected_pid(&c, &st), Some(4250));
    let mut term = Terminal::new(TestBackend::new(200, 50)).unwrap();
    term.draw(|f| picker::draw(f, &c, &st, &Theme::from_env()))
        .unwrap();
    let s = text(&term);
    assert!(!s.contains("checkpointer"), "{s}");
    insta::assert_snapshot!("picker_200x50_filtered", s);
}

#[test]
fn scripted_model_is_what_the_screens_claim() {
    // Guards the scripted scenario itself: a moving scan 60% through, a current file.
    let (m, _) = scan_model();
    let r = m.relation_at("base/16385/16388").unwrap();
    let pct = r.percent().unwrap();
    assert!((79.0..81.0).contains(&pct), "{pct}");
    assert!(r.rate_bps > 90.0 * scripted::MIB as f64, "{}", r.rate_bps);
    assert_eq!(
        m.current_file().unwrap().fd,
        25,
        "segment 1 of sales.orders"
    );
}

#[test]
fn log_ring_is_bounded_and_debug_logs_every_syscall() {
    let mut log = LogRing::new();
    for k in 0..(pg_trace::ui::log::LOG_CAPACITY as u64 + 500) {
        log.push(T0 + k, pg_trace::ui::log::Level::Info, format!("line {k}"));
    }
    assert_eq!(log.len(), pg_trace::ui::log::LOG_CAPACITY);
    assert_eq!(log.dropped, 500);
    assert_eq!(log.iter().next().unwrap().text, "line 500");

    let (mut m, now) = scan_model();
    let mut plain = LogRing::new();
    let mut debug = LogRing::new();
    let events = [
        pread(now, 24, 0, 8192),
        ev(
            now,
            EventKind::Read {
                syscall: pg_trace::trace::Syscall::Pread64,
                fd: 24,
                offset: Some(0),
                requested: 8192,
                result: -5,
            },
        ),
        ev(now, EventKind::Close { fd: 24 }),
    ];
    for e in &events {
        plain.record(&m, e, false, false);
        debug.record(&m, e, false, true);
        apply(&mut m, e.clone());
        plain.record(&m, e, true, false);
        debug.record(&m, e, true, true);
    }
    let texts = |l: &LogRing| l.iter().map(|x| x.text.clone()).collect::<Vec<_>>();
    let p = texts(&plain);
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("pread64 sales.orders: EIO"), "{p:?}");
    assert!(p[1].starts_with("close fd 24 sales.orders"), "{p:?}");
    let d = texts(&debug);
    assert!(
        d.iter()
            .any(|t| t.contains("pread64(fd=24 → sales.orders, 8192 @ 0) = 8192")),
        "{d:?}"
    );
    assert!(
        d.iter().any(|t| t.contains("close(fd=24 → sales.orders)")),
        "{d:?}"
    );
}

#[test]
fn scrolling_stops_at_the_last_rows() {
    let (m, now) = scan_model();
    let st = ScreenState {
        scroll_files: 1000,
        ..ScreenState::default()
    };
    let s = text(&render_trace(
        80,
        18,
        &m,
        &info(now),
        &LogRing::new(),
        &st,
        Theme::from_env(),
    ));
    // The oldest-touched file (the FSM read once at the start) is the last row, and shown.
    assert!(s.contains("fsm"), "{s}");
    assert!(s.contains('↑'), "the title says the panel is scrolled: {s}");
    assert!(
        !s.contains("▶ 25"),
        "the current file scrolled out of view: {s}"
    );
}

/// Only USDT sees the scan (the blocks come from shared buffers or the syscall tracer is
/// off): the relation is listed from its block accesses, with the hit ratio and a coverage
/// strip filled from the blocks, and the query text is the activity.
#[test]
fn usdt_only_scan_shows_blocks_hits_and_query() {
    use pg_trace::trace::{BlockProbe, QueryPhase};
    let mut m = Model::new(PID, SEG);
    apply(
        &mut m,
        ev(
            T0,
            EventKind::Query {
                phase: QueryPhase::Start,
                text: "SELECT count(*)\n  FROM sales.orders".into(),
                truncated: false,
            },
        ),
    );
    // The first half of sales.orders' blocks, one in four a miss.
    let blocks = (SEG + SEG / 2) / 8192 / 2;
    for b in 0..blocks as u32 {
        let kind = EventKind::BlockIo(pg_trace::trace::BlockIo {
            probe: BlockProbe::BufferReadDone,
            rel: pg_trace::pgdata::RelFileLocator {
                spc_oid: 1663,
                db_oid: 16385,
                rel_number: 16388,
                backend: None,
            },
            fork: pg_trace::pgdata::Fork::Main,
            block: b,
            nblocks: 1,
            hit: Some(b % 4 != 0),
            write: false,
        });
        apply(&mut m, ev(T0 + u64::from(b) * 50_000, kind));
    }
    let now = T0 + blocks * 50_000;
    tick(&mut m, now);
    let r = m.relation_at("base/16385/16388").unwrap();
    assert_eq!(r.blocks_hit + r.blocks_read, blocks);
    let mut i = info(now);
    i.methods = "usdt".into();
    let term = render_trace(
        200,
        30,
        &m,
        &i,
        &LogRing::new(),
        &ScreenState::default(),
        Theme::from_env(),
    );
    let s = text(&term);
    assert!(s.contains("sales.orders"), "{s}");
    assert!(s.contains("75%"), "hit ratio: {s}");
    assert!(
        s.contains("SELECT count(*) FROM sales.orders"),
        "query: {s}"
    );
    assert!(
        s.contains("████") && s.contains("····"),
        "half-filled strip: {s}"
    );
}

/// A walsender whose status sample (as read from shared memory) says a base backup is
/// streaming and throttled: the activity line carries the phase and bytes, the verdict
/// line says why it is slow, and both come from the model alone.
#[test]
fn backup_status_and_verdict_in_the_header() {
    use pg_trace::process::status::StatusSample;
    let mut m = Model::new(PID, SEG);
    let sample = StatusSample {
        pid: PID,
        major: 15,
        backend_type: Some("walsender".into()),
        state: Some("active".into()),
        query: Some("BASE_BACKUP ( LABEL 'nightly', PROGRESS, MAX_RATE 1024)".into()),
        wait_event_type: Some("Timeout".into()),
        wait_event: Some("BaseBackupThrottle".into()),
        wait_event_raw: Some(0x0900_0000),
        progress_command: Some("basebackup".into()),
        progress_params: vec![3, 400 << 20, 100 << 20, 2, 0],
        title: Some("postgres: walsender postgres [local] sending backup \"nightly\"".into()),
        sampled_at_us: 1,
        ..StatusSample::default()
    };
    apply(
        &mut m,
        ev(
            T0,
            EventKind::Status {
                sample: Box::new(sample),
            },
        ),
    );
    tick(&mut m, T0 + 1_000_000_000);
    let mut i = info(T0 + 1_000_000_000);
    i.title = "postgres: walsender postgres [local] sending backup \"nightly\"".into();
    let s = text(&render_trace(
        120,
        24,
        &m,
        &i,
        &LogRing::new(),
        &ScreenState::default(),
        Theme::from_env(),
    ));
    assert!(s.contains("streaming database files"), "{s}");
    assert!(s.contains("25.0%"), "100 MiB of 400 MiB: {s}");
    assert!(s.contains("tablespace 1 of 2"), "{s}");
    assert!(s.contains("⚠ throttled by --max-rate"), "{s}");
}

/// The cost on the header's second line, last (what a narrow screen cuts first): the
/// probes' run time as a share of one core, then pg_trace's own CPU and memory; `probes ?`
/// when the kernel does not time the programs; no probes part without BPF.
#[test]
fn cost_in_the_header() {
    use pg_trace::trace::cost::{OwnUsage, ProbeCost, ProbeRuntime};
    let (mut m, now) = scan_model();
    let own = |cpu_ns, rss| OwnUsage {
        cpu_ns: Some(cpu_ns),
        rss_bytes: Some(rss),
    };
    let second_line = |m: &Model| {
        let term = render_trace(
            120,
            24,
            m,
            &info(now),
            &LogRing::new(),
            &ScreenState::default(),
            Theme::from_env(),
        );
        text(&term).lines().nth(1).unwrap().to_string()
    };
    let measured = |ns, runs| {
        ProbeCost::Measured(ProbeRuntime {
            run_time_ns: ns,
            runs,
            usdt_runs: 0,
        })
    };
    m.cost.fold(0, &measured(0, 0), own(0, 40 << 20));
    m.cost.fold(
        1_000_000_000,
        &measured(8_000_000, 310_000),
        own(31_000_000, 42 << 20),
    );
    let l = second_line(&m);
    assert!(l.contains("lost 0  probes 0.8%  self 3.1% 42.0M"), "{l}");
    insta::assert_snapshot!("header_cost_120", l);

    let off = ProbeCost::Unmeasured("statistics off".into());
    m.cost.fold(2_000_000_000, &off, own(32_000_000, 42 << 20));
    let l = second_line(&m);
    assert!(l.contains("probes ?  self 0.1% 42.0M"), "{l}");

    m.cost = Default::default();
    m.cost.fold(0, &ProbeCost::NotBpf, own(0, 20 << 20));
    let l = second_line(&m);
    assert!(l.contains("lost 0  self - 20.0M"), "{l}");
    assert!(!l.contains("probes"), "{l}");
}

/// A status sample of the scripted backend running `cmd` with these counters.
fn progress_sample(
    cmd: Option<&str>,
    backend_type: &str,
    params: &[(usize, i64)],
    query: &str,
) -> Box<pg_trace::process::status::StatusSample> {
    let mut p = vec![0i64; 20];
    for &(i, v) in params {
        p[i] = v;
    }
    Box::new(pg_trace::process::status::StatusSample {
        pid: PID,
        major: 16,
        backend_type: Some(backend_type.into()),
        state: Some("active".into()),
        database_oid: Some(16385),
        query: Some(query.into()),
        progress_command: cmd.map(str::to_string),
        progress_target: cmd.map(|_| 16500),
        progress_params: p,
        ..Default::default()
    })
}

/// The header (activity and operation lines) after two samples 4 s apart, the second
/// with `later` counters.
fn operation_header(
    cmd: Option<&str>,
    backend_type: &str,
    first: &[(usize, i64)],
    later: &[(usize, i64)],
    query: &str,
    events: &[pg_trace::trace::Event],
) -> String {
    let mut m = Model::new(PID, SEG);
    let s = progress_sample(cmd, backend_type, first, query);
    apply(&mut m, ev(T0, EventKind::Status { sample: s }));
    tick(&mut m, T0);
    for e in events {
        apply(&mut m, e.clone());
    }
    let t = T0 + 4_000_000_000;
    let s = progress_sample(cmd, backend_type, later, query);
    apply(&mut m, ev(t, EventKind::Status { sample: s }));
    tick(&mut m, t);
    let mut i = info(t);
    i.limitations.clear();
    let term = render_trace(
        140,
        12,
        &m,
        &i,
        &LogRing::new(),
        &ScreenState::default(),
        Theme::mono(),
    );
    text(&term).lines().take(5).collect::<Vec<_>>().join("\n")
}

/// One operation line per kind, from scripted status samples (and files where the
/// counters say nothing).
#[test]
fn operation_lines() {
    let mut all = Vec::new();
    let mut add = |name: &str, s: String| {
        assert!(s.contains("op "), "{name}: no operation line\n{s}");
        all.push(format!("--- {name}\n{s}"));
    };
    // CREATE INDEX, btree scanning the table: blocks.
    add(
        "create index",
        operation_header(
            Some("create_index"),
            "client backend",
            &[
                (0, 1),
                (6, 16400),
                (8, 403),
                (9, 2),
                (10, 2),
                (15, 4000),
                (16, 400),
            ],
            &[
                (0, 1),
                (6, 16400),
                (8, 403),
                (9, 2),
                (10, 2),
                (15, 4000),
                (16, 1200),
            ],
            "CREATE INDEX orders_day ON sales.orders (day)",
            &[],
        ),
    );
    // REINDEX loading the tree: tuples.
    add(
        "reindex",
        operation_header(
            Some("create_index"),
            "client backend",
            &[
                (0, 3),
                (8, 403),
                (9, 2),
                (10, 5),
                (11, 1_000_000),
                (12, 100_000),
            ],
            &[
                (0, 3),
                (8, 403),
                (9, 2),
                (10, 5),
                (11, 1_000_000),
                (12, 300_000),
            ],
            "REINDEX INDEX sales.orders_pkey",
            &[],
        ),
    );
    // CREATE INDEX sorting: the spilled sort's temp file read back.
    let tmp = "base/pgsql_tmp/pgsql_tmp4242.0";
    add(
        "create index, sort spilled",
        operation_header(
            Some("create_index"),
            "client backend",
            &[(0, 1), (8, 403), (9, 2), (10, 3)],
            &[(0, 1), (8, 403), (9, 2), (10, 3)],
            "CREATE INDEX orders_day ON sales.orders (day)",
            &[
                open(T0 + 1_000_000, 40, tmp),
                write(T0 + 2_000_000, 40, 0, 8 * MIB),
                pread(T0 + 3_000_000_000, 40, 0, 2 * MIB),
            ],
        ),
    );
    add(
        "vacuum",
        operation_header(
            Some("vacuum"),
            "client backend",
            &[(0, 1), (1, 196_608), (2, 20_000)],
            &[(0, 1), (1, 196_608), (2, 60_000)],
            "VACUUM sales.orders",
            &[],
        ),
    );
    // An index pass: the index read front to back.
    add(
        "autovacuum, index pass",
        operation_header(
            Some("vacuum"),
            "autovacuum worker",
            &[(0, 2), (1, 196_608), (2, 196_608), (4, 1)],
            &[(0, 2), (1, 196_608), (2, 196_608), (4, 1)],
            "autovacuum: VACUUM sales.orders",
            &[
                open(T0 + 1_000_000, 41, "base/16385/16394"),
                pread(T0 + 2_000_000_000, 41, 0, 50 * MIB),
            ],
        ),
    );
    add(
        "cluster",
        operation_header(
            Some("cluster"),
            "client backend",
            &[(0, 1), (1, 1), (5, 196_608), (6, 10_000)],
            &[(0, 1), (1, 1), (5, 196_608), (6, 50_000)],
            "CLUSTER sales.orders USING orders_pkey",
            &[],
        ),
    );
    add(
        "vacuum full",
        operation_header(
            Some("cluster"),
            "client backend",
            &[(0, 2), (1, 6), (7, 1)],
            &[(0, 2), (1, 6), (7, 2)],
            "VACUUM FULL sales.orders",
            &[],
        ),
    );
    add(
        "copy from a file",
        operation_header(
            Some("copy"),
            "client backend",
            &[
                (0, 100 * MIB as i64),
                (1, 400 * MIB as i64),
                (2, 1_000_000),
                (4, 1),
                (5, 1),
            ],
            &[
                (0, 200 * MIB as i64),
                (1, 400 * MIB as i64),
                (2, 2_000_000),
                (4, 1),
                (5, 1),
            ],
            "COPY sales.orders FROM '/srv/orders.csv'",
            &[],
        ),
    );
    add(
        "copy from the client",
        operation_header(
            Some("copy"),
            "client backend",
            &[(2, 1_000_000), (4, 1), (5, 3)],
            &[(2, 3_000_000), (4, 1), (5, 3)],
            "COPY sales.orders FROM STDIN",
            &[],
        ),
    );
    add(
        "analyze",
        operation_header(
            Some("analyze"),
            "client backend",
            &[(0, 1), (1, 30_000), (2, 3_000)],
            &[(0, 1), (1, 30_000), (2, 9_000)],
            "ANALYZE sales.orders",
            &[],
        ),
    );
    // 12–13: no copy view; the source file's position, the table written.
    add(
        "copy without a view",
        operation_header(
            None,
            "client backend",
            &[],
            &[],
            "COPY sales.orders FROM '/srv/orders.csv'",
            &[
                open(T0 + 1_000_000, 42, "/srv/orders.csv"),
                pread(T0 + 1_000_000_000, 42, 0, 6 * MIB),
                open(T0 + 1_000_000, 43, "base/16385/16388"),
                write(T0 + 1_000_000_000, 43, 0, 8192),
            ],
        ),
    );
    // A long DELETE: no view; the table it scans, how far, and the WAL it writes.
    add(
        "query (a long DELETE)",
        operation_header(
            None,
            "client backend",
            &[],
            &[],
            "DELETE FROM sales.orders WHERE day < '2020-01-01'",
            &[
                open(T0 + 1_000_000, 43, "base/16385/16388"),
                pread(T0 + 1_000_000_000, 43, 0, 6 * MIB),
                pread(T0 + 2_000_000_000, 43, 6 * MIB, 6 * MIB),
                open(T0 + 1_000_000, 44, "pg_wal/000000010000000000000003"),
                write(T0 + 2_000_000_000, 44, 0, 2 * MIB),
            ],
        ),
    );
    // The backend serving pg_dump: its COPY TO (here no catalog says how many tables).
    add(
        "pg_dump",
        operation_header(
            Some("copy"),
            "client backend",
            &[(2, 10_000), (4, 2), (5, 3)],
            &[(2, 30_000), (4, 2), (5, 3)],
            "COPY sales.orders (id, total) TO stdout;",
            &[],
        ),
    );
    insta::assert_snapshot!("operation_lines", all.join("\n"));
}

/// The walsender operation line: a physical standby catching up (its ETA from the
/// distance closed), and a logical walsender whose slot has spilled a transaction.
#[test]
fn walsender_lines() {
    use pg_trace::process::walsender::{spill::Spill, SlotSample, WalSenderSample};
    const MB: u64 = 1 << 20;
    let header = |first: WalSenderSample, later: WalSenderSample| {
        let sample = |w: WalSenderSample| {
            Box::new(pg_trace::process::status::StatusSample {
                pid: PID,
                major: 16,
                backend_type: Some("walsender".into()),
                state: Some("active".into()),
                query: Some("START_REPLICATION 0/3000000 TIMELINE 1".into()),
                walsender: Some(w),
                ..Default::default()
            })
        };
        let mut m = Model::new(PID, SEG);
        apply(
            &mut m,
            ev(
                T0,
                EventKind::Status {
                    sample: sample(first),
                },
            ),
        );
        tick(&mut m, T0);
        let t = T0 + 4_000_000_000;
        apply(
            &mut m,
            ev(
                t,
                EventKind::Status {
                    sample: sample(later),
                },
            ),
        );
        tick(&mut m, t);
        let mut i = info(t);
        i.limitations.clear();
        let term = render_trace(
            140,
            12,
            &m,
            &i,
            &LogRing::new(),
            &ScreenState::default(),
            Theme::mono(),
        );
        text(&term).lines().take(5).collect::<Vec<_>>().join("\n")
    };
    let physical = |sent: u64, insert: u64| WalSenderSample {
        state: "catchup".into(),
        sent: Some(sent),
        write: Some(sent - MB),
        flush: Some(sent - 2 * MB),
        replay: Some(sent - 3 * MB),
        write_lag_us: Some(120_000),
        flush_lag_us: Some(250_000),
        replay_lag_us: Some(1_500_000),
        insert: Some(insert),
        slot: None,
    };
    let phys = header(
        physical(1000 * MB, 1400 * MB),
        physical(1200 * MB, 1440 * MB),
    );
    assert!(phys.contains("op    walsender: catchup"), "{phys}");
    // 200 MiB sent in 4 s while the server wrote 40: 160 MiB closed, 240 MiB to go.
    assert!(phys.contains("ETA 6s"), "{phys}");
    let logical = |sent: u64, spill: Spill| WalSenderSample {
        state: "streaming".into(),
        sent: Some(sent),
        write: Some(sent),
        flush: Some(sent),
        replay: Some(sent),
        insert: Some(sent + 8 * MB),
        slot: Some(SlotSample {
            name: "sub1".into(),
            logical: true,
            restart_lsn: Some(sent - 30 * MB),
            confirmed_flush: Some(sent - 10 * MB),
            spill: Some(spill),
        }),
        ..Default::default()
    };
    let logi = header(
        logical(
            500 * MB,
            Spill {
                files: 1,
                bytes: 3 * MB,
            },
        ),
        logical(
            540 * MB,
            Spill {
                files: 3,
                bytes: 9 * MB,
            },
        ),
    );
    assert!(logi.contains("spilled 3 files 9.0 MiB"), "{logi}");
    insta::assert_snapshot!(
        "walsender_lines",
        format!("--- physical, catching up\n{phys}\n--- logical, spilling\n{logi}")
    );
}
