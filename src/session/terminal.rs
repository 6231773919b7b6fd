//! The terminal: raw mode and the alternate screen on entry, restored on every way out —
//! `Drop` (normal exit, error, SIGTERM/SIGHUP turned into a stop flag by the app loop) and a
//! panic hook (restore first, then the usual panic message on a sane screen).

use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::{cursor, execute, terminal};
use ratatui::Terminal;
use std::io::Stdout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Once};
use std::thread::ThreadId;

/// True while the terminal is in TUI mode; restoring twice is harmless but noisy.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: Once = Once::new();
/// The thread that draws: only its panic restores the terminal at once. Another thread's
/// panic (a tracer's worker, say) raises `WORKER_PANICKED`, and the UI loop ends through
/// its normal path: detach first, then restore.
static UI_THREAD: Mutex<Option<ThreadId>> = Mutex::new(None);
static WORKER_PANICKED: AtomicBool = AtomicBool::new(false);

/// True once a thread other than the UI's has panicked while the TUI was up.
pub fn worker_panicked() -> bool {
    WORKER_PANICKED.load(Ordering::SeqCst)
}

fn is_ui_thread() -> bool {
    let ui = UI_THREAD.lock().map(|g| *g).unwrap_or(None);
    ui.map_or(true, |id| id == std::thread::current().id())
}

fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let _ = terminal::disable_raw_mode();
        let _ = execute!(
            std::io::stdout(),
            terminal::LeaveAlternateScreen,
            cursor::Show
        );
    }
}

pub struct Guard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl Guard {
    pub fn enter() -> anyhow::Result<Guard> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if is_ui_thread() {
                    restore();
                } else if ACTIVE.load(Ordering::SeqCst) {
                    WORKER_PANICKED.store(true, Ordering::SeqCst);
                }
                previous(info);
            }));
        });
        if let Ok(mut g) = UI_THREAD.lock() {
            *g = Some(std::thread::current().id());
        }
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, terminal::EnterAlternateScreen, cursor::Hide) {
            restore();
            return Err(e.into());
        }
        let terminal = match Terminal::new(CrosstermBackend::new(out)) {
            Ok(t) => t,
            Err(e) => {
                restore();
                return Err(e.into());
            }
        };
        Ok(Guard { terminal })
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        restore();
    }
}
