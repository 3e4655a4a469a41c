//! The libvirt event thread: lifecycle and reboot events become messages.
//!
//! One thread runs libvirt's default event loop. Its callbacks only turn an
//! event into an [`Outgoing`] item and `try_send` it into the bounded
//! channel: the loop never waits on the network or the sender. If the channel
//! is full the event is counted as lost and the loop marks the node out of
//! sync; as soon as there is room it sends a fresh full snapshot, which
//! repairs the master's view. Snapshots are taken on this same thread,
//! between callbacks, so a snapshot can never overtake an event that
//! happened after it was listed.
//!
//! The connection has keepalive on and a close callback: when libvirtd dies
//! or stops answering, the loop ends and the node reports a failure (the
//! original daemon's documented behaviour is to stop; init restarts it).

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::sys;

use super::gone::GoneChecks;
use super::libvirt::{detail_name, domain_id, event_name, lent_domain, snapshot};
use super::messages::{Flags, Outgoing, ToSender};
use super::reboots::RebootIds;
use super::snapshot_gate::Action;
use crate::clock::now_ms;
use crate::log_limited;
use crate::protocol::{DomainId, Event};
use crate::ratelimit::RateLimit;
use crate::service::Shutdown;
use crate::vocab::{Detail, EventKind};

/// How often the loop looks again while it has something pending (a
/// wanted list waiting for room or for the one queued, a stopped domain
/// being looked at). With nothing pending its timer waits for the next
/// sync, and other threads wake it through `Flags::events_bell` (a stop, a
/// wanted list).
const TICK_MS: c_int = 250;

/// State the C callbacks reach through their opaque pointer.
struct CallbackCtx {
    tx: ToSender,
    /// Set when an event could not be queued; cleared by a snapshot.
    overflow: AtomicBool,
    dropped: AtomicU64,
    /// -1 while the connection is open, else libvirt's close reason.
    closed: AtomicI32,
    /// The id of each domain's last reboot, kept on disk across instances
    /// and named even when the event could not be queued; every event and
    /// snapshot record carries it, so the master can deliver a reboot it
    /// never got (docs/protocol.md, "Reboots"). Only the loop thread
    /// touches it; the mutex makes that checkable.
    reboots: Mutex<RebootIds>,
    /// Domains that stopped (true) or were undefined or started (false)
    /// since the loop last looked, in order: see [`super::gone`].
    stops: Mutex<Vec<(DomainId, bool)>>,
    limit: Mutex<RateLimit>,
}

impl CallbackCtx {
    fn lock_reboots(&self) -> std::sync::MutexGuard<'_, RebootIds> {
        self.reboots.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, ev: Event) {
        match self.tx.try_send(Outgoing::Event(ev)) {
            Ok(()) => super::status::STATUS.queued(),
            Err(TrySendError::Full(Outgoing::Event(ev))) => {
                self.overflow.store(true, Ordering::SeqCst);
                let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                let mut limit = self.limit.lock().unwrap_or_else(|p| p.into_inner());
                log_limited!(
                    limit,
                    log::Level::Warn,
                    "queue to the master is full: event {} for domain {} not queued ({n} so far); a full snapshot will follow",
                    ev.event,
                    ev.domain.name
                );
            }
            Err(_) => {} // stopping: the sender is gone
        }
    }
}

/// An open libvirt connection with our callbacks registered on it.
pub struct EventSource {
    conn: Connect,
    ctx: Box<CallbackCtx>,
    callback_ids: Vec<c_int>,
    timer: c_int,
    uri: String,
}

// SAFETY: the callback context is only touched by libvirt on the thread that
// runs the event loop, which is the thread that owns the EventSource after it
// has been moved there; `Connect` is a libvirt connection, which libvirt
// documents as usable from any thread.
unsafe impl Send for EventSource {}

/// libvirt's close reasons, for the log.
fn close_reason(reason: c_int) -> &'static str {
    match reason as sys::virConnectCloseReason {
        sys::VIR_CONNECT_CLOSE_REASON_ERROR => "I/O error",
        sys::VIR_CONNECT_CLOSE_REASON_EOF => "libvirtd closed the connection",
        sys::VIR_CONNECT_CLOSE_REASON_KEEPALIVE => "keepalive timeout: libvirtd stopped answering",
        sys::VIR_CONNECT_CLOSE_REASON_CLIENT => "closed by the client",
        _ => "unknown reason",
    }
}

/// # Safety
/// Called by libvirt with the opaque pointer we registered: a live
/// `CallbackCtx` owned by the EventSource, freed only after deregistration.
unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) {
    // SAFETY: see the function's contract above.
    let ctx = unsafe { &*(opaque as *const CallbackCtx) };
    // SAFETY: libvirt passes a domain valid for the callback's duration and
    // keeps its reference; the view does not outlive this call.
    let dom = unsafe { lent_domain(dom) };
    let Some(domain) = domain_id(&dom) else {
        return;
    };
    // Ids are never reset: a domain undefined and defined again with the
    // same UUID goes on from its last reboot id.
    let rebootid = Some(ctx.lock_reboots().last(&domain.uuid));
    let ev = Event {
        domain,
        event: event_name(event),
        detail: detail_name(event, detail),
        time_ms: now_ms(),
        reboots: None,
        rebootid,
    };
    if matches!(
        ev.event,
        EventKind::Stopped | EventKind::Undefined | EventKind::Started
    ) {
        let stopped = ev.event == EventKind::Stopped;
        ctx.stops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ev.domain.clone(), stopped));
    }
    log::debug!("libvirt: {} {} ({})", ev.domain.name, ev.event, ev.detail);
    ctx.push(ev);
}

/// # Safety
/// As for [`on_lifecycle`].
unsafe extern "C" fn on_reboot(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    opaque: *mut c_void,
) {
    // SAFETY: see on_lifecycle.
    let ctx = unsafe { &*(opaque as *const CallbackCtx) };
    // SAFETY: libvirt passes a domain valid for the callback's duration and
    // keeps its reference; the view does not outlive this call.
    let dom = unsafe { lent_domain(dom) };
    let Some(domain) = domain_id(&dom) else {
        return;
    };
    // Named and written to the reboot file before it is queued: from here
    // on a kill cannot lose it (the next instance's snapshot carries it).
    let time_ms = now_ms();
    let id = ctx.lock_reboots().next(&domain.uuid, time_ms / 1000);
    log::debug!("libvirt: {} rebooted (reboot id {id})", domain.name);
    ctx.push(Event {
        domain,
        event: EventKind::Reboot,
        detail: Detail::NONE,
        time_ms,
        reboots: None,
        rebootid: Some(id),
    });
}

/// # Safety
/// As for [`on_lifecycle`].
unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    // SAFETY: see on_lifecycle.
    let ctx = unsafe { &*(opaque as *const CallbackCtx) };
    ctx.closed.store(reason, Ordering::SeqCst);
}

/// Does nothing; its only effect is to make the event loop return.
unsafe extern "C" fn on_tick(_timer: c_int, _opaque: *mut c_void) {}

/// The event thread's bell rang: silences it; the loop then returns and
/// looks at what another thread asked for.
unsafe extern "C" fn on_bell(_watch: c_int, fd: c_int, _events: c_int, _opaque: *mut c_void) {
    crate::service::Bell::clear_fd(fd);
}

impl EventSource {
    /// Opens `uri`, turns on keepalive and registers every callback. The
    /// default event implementation must be registered before (see
    /// `Node::run` in node/mod.rs), or libvirt never delivers events.
    pub fn open(
        uri: &str,
        keepalive_interval: u64,
        keepalive_count: u64,
        reboot_file: &str,
        tx: ToSender,
    ) -> Result<EventSource, String> {
        let conn = Connect::open(Some(uri)).map_err(|e| {
            format!("cannot connect to libvirt at {uri}: {e} (is libvirtd running?)")
        })?;
        let ctx = Box::new(CallbackCtx {
            tx,
            overflow: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            closed: AtomicI32::new(-1),
            reboots: Mutex::new(RebootIds::load(reboot_file)),
            stops: Mutex::new(Vec::new()),
            limit: Mutex::new(RateLimit::new(5, Duration::from_secs(60))),
        });
        let mut src = EventSource {
            conn,
            ctx,
            callback_ids: Vec::new(),
            timer: -1,
            uri: uri.to_string(),
        };
        let opaque = &*src.ctx as *const CallbackCtx as *mut c_void;
        // SAFETY: the connection pointer is valid while `src.conn` lives.
        let conn = unsafe { src.conn.as_ptr() };
        // Keepalive is not available on every driver (the in-process test
        // driver has none); without it, EOF still reports a dead libvirtd.
        let interval = c_int::try_from(keepalive_interval).unwrap_or(c_int::MAX);
        let count = u32::try_from(keepalive_count).unwrap_or(u32::MAX);
        if src.conn.set_keep_alive(interval, count).is_err() {
            log::debug!("libvirt keepalive not supported by {uri}");
        }
        // SAFETY: `opaque` points into the boxed context, which outlives the
        // registration (Drop unregisters before the box is freed); no free
        // callback, since we own the context.
        if unsafe { sys::virConnectRegisterCloseCallback(conn, Some(on_close), opaque, None) } < 0 {
            log::debug!("libvirt close callback not supported by {uri}");
        }
        type Lifecycle =
            unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, c_int, c_int, *mut c_void);
        type Generic = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
        // SAFETY: libvirt's documented contract: the generic callback type is
        // cast to the event-specific one, and libvirt calls it with the
        // lifecycle signature for VIR_DOMAIN_EVENT_ID_LIFECYCLE.
        let lifecycle: Generic = unsafe { std::mem::transmute::<Lifecycle, Generic>(on_lifecycle) };
        for (id, cb, what) in [
            (sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle, "lifecycle"),
            (
                sys::VIR_DOMAIN_EVENT_ID_REBOOT,
                on_reboot as Generic,
                "reboot",
            ),
        ] {
            // SAFETY: valid connection, a null domain means "all domains",
            // `opaque` lives as long as the registration (see above).
            let rc = unsafe {
                sys::virConnectDomainEventRegisterAny(
                    conn,
                    std::ptr::null_mut(),
                    id as c_int,
                    Some(cb),
                    opaque,
                    None,
                )
            };
            if rc < 0 {
                return Err(format!(
                    "cannot register for {what} events on {uri}: {}",
                    virt::error::Error::last_error()
                ));
            }
            src.callback_ids.push(rc);
        }
        // Not virt::event::event_add_timeout: on failure, virt 0.5.0 frees
        // the caller's opaque pointer (here null) as its own callback box.
        // SAFETY: a plain periodic timer with no opaque data and no free
        // callback; removed in Drop.
        src.timer =
            unsafe { sys::virEventAddTimeout(TICK_MS, Some(on_tick), std::ptr::null_mut(), None) };
        if src.timer < 0 {
            return Err("cannot add a libvirt event timer".into());
        }
        Ok(src)
    }

    /// The libvirt host UUID of this connection (see [`super::host`]).
    pub fn host_uuid(&self) -> Option<String> {
        super::host::host_uuid(&self.conn)
    }

    /// Runs the loop until a stop is requested or the connection is lost.
    /// `sync_interval` is how often a full snapshot is sent regardless;
    /// `queue_size` is the channel's capacity (no list while it is full).
    pub fn run(
        self,
        shutdown: &Shutdown,
        flags: &Flags,
        sync_interval: Duration,
        queue_size: usize,
    ) {
        let mut next_sync = Instant::now() + sync_interval;
        let mut gone = GoneChecks::default();
        // SAFETY: the bell's descriptor lives in `flags`, which outlives
        // this call; the handle is removed before it returns. No opaque
        // data, no free callback.
        let bell = unsafe {
            sys::virEventAddHandle(
                flags.events_bell.fd(),
                sys::VIR_EVENT_HANDLE_READABLE as c_int,
                Some(on_bell),
                std::ptr::null_mut(),
                None,
            )
        };
        if bell < 0 {
            log::warn!(
                "cannot watch the event thread's bell in libvirt's event loop: looking for a stop every {TICK_MS} ms"
            );
        }
        loop {
            if shutdown.stopping() {
                break;
            }
            let closed = self.ctx.closed.load(Ordering::SeqCst);
            if closed >= 0 {
                super::status::STATUS.libvirt(false);
                shutdown.fail(format!(
                    "lost the libvirt connection to {}: {}; stopping",
                    self.uri,
                    close_reason(closed)
                ));
                break;
            }
            if Instant::now() >= next_sync {
                flags.snapshot_wanted.store(true, Ordering::SeqCst);
                next_sync = Instant::now() + sync_interval;
            }
            let room = super::status::STATUS.in_channel() < queue_size;
            match flags.gate.decide(
                flags.snapshot_wanted.load(Ordering::SeqCst),
                self.ctx.overflow.load(Ordering::SeqCst),
                room,
                Instant::now(),
            ) {
                Action::List => self.send_snapshot(flags),
                Action::Satisfied => {
                    log::debug!("a full list is wanted: the one queued and not yet sent will do");
                    flags.snapshot_wanted.store(false, Ordering::SeqCst);
                }
                Action::Wait => {}
            }
            self.check_gone(&mut gone);
            // Sleep until an event, the bell, or the timer: the next sync,
            // or soon while something is pending.
            let pending = bell < 0
                || flags.snapshot_wanted.load(Ordering::SeqCst)
                || self.ctx.overflow.load(Ordering::SeqCst)
                || !gone.is_empty();
            let wait = if pending {
                TICK_MS
            } else {
                let ms = next_sync
                    .saturating_duration_since(Instant::now())
                    .as_millis();
                c_int::try_from(ms).unwrap_or(c_int::MAX)
            };
            // SAFETY: our own timer, registered in `open` and removed only
            // in Drop.
            unsafe { sys::virEventUpdateTimeout(self.timer, wait) };
            if let Err(e) = virt::event::event_run_default_impl() {
                shutdown.fail(format!("libvirt event loop failed: {e}"));
                break;
            }
        }
        if bell >= 0 {
            // SAFETY: the handle registered above; removing it stops libvirt
            // from watching the descriptor.
            unsafe { sys::virEventRemoveHandle(bell) };
        }
        let dropped = self.ctx.dropped.load(Ordering::Relaxed);
        if dropped > 0 {
            log::warn!("{dropped} libvirt events could not be queued during this run");
        }
    }

    /// Sends `undefined` (detail `removed`) for stopped domains whose
    /// definition went without an event (docs/protocol.md, "Domains that
    /// vanish"; see [`super::gone`]).
    fn check_gone(&self, gone: &mut GoneChecks) {
        let now = Instant::now();
        let news: Vec<(DomainId, bool)> =
            std::mem::take(&mut *self.ctx.stops.lock().unwrap_or_else(|p| p.into_inner()));
        for (domain, stopped) in news {
            if stopped {
                gone.stopped(domain, now);
            } else {
                gone.forget(&domain.uuid);
            }
        }
        if gone.is_empty() {
            return;
        }
        for domain in gone.run(&self.conn, now) {
            log::debug!(
                "libvirt: {} ({}) stopped and its definition is gone: sending undefined",
                domain.name,
                domain.uuid
            );
            let rebootid = Some(self.ctx.lock_reboots().last(&domain.uuid));
            self.ctx.push(Event {
                domain,
                event: EventKind::Undefined,
                detail: Detail::parse(EventKind::Undefined, "removed").expect("a libvirt detail"),
                time_ms: now_ms(),
                reboots: None,
                rebootid,
            });
        }
    }

    /// Lists every domain and queues the list. A list that could not read
    /// every domain is not sent (the master would take the missing ones for
    /// gone): the gate retries later. If the channel filled up meanwhile,
    /// the request stays and the gate waits for room.
    fn send_snapshot(&self, flags: &Flags) {
        let domains = match snapshot(&self.conn) {
            Ok(mut d) => {
                let ids = self.ctx.lock_reboots();
                for s in &mut d {
                    s.rebootid = Some(ids.last(&s.domain.uuid));
                }
                d
            }
            Err(e) => {
                flags.gate.failed(Instant::now());
                let mut limit = self.ctx.limit.lock().unwrap_or_else(|p| p.into_inner());
                log_limited!(
                    limit,
                    log::Level::Warn,
                    "full list of {} not sent: {e}; trying again in {} s",
                    self.uri,
                    super::snapshot_gate::RETRY.as_secs()
                );
                return;
            }
        };
        let count = domains.len();
        flags.gate.queuing();
        if self.ctx.tx.try_send(Outgoing::Snapshot(domains)).is_ok() {
            super::status::STATUS.queued();
            flags.snapshot_wanted.store(false, Ordering::SeqCst);
            if self.ctx.overflow.swap(false, Ordering::SeqCst) {
                log::info!(
                    "queue has room again: sent a full snapshot of {count} domains to repair lost events"
                );
            } else {
                log::debug!("snapshot of {count} domains queued");
            }
        } else {
            flags.gate.not_queued();
        }
    }
}

impl Drop for EventSource {
    fn drop(&mut self) {
        // SAFETY: the connection is still open here (it closes when
        // `self.conn` drops after this body); unregistering stops libvirt from
        // using the context pointer before the box is freed. Failures (a dead
        // connection) are harmless: no further callbacks can come.
        unsafe {
            let conn = self.conn.as_ptr();
            for id in self.callback_ids.drain(..) {
                sys::virConnectDomainEventDeregisterAny(conn, id);
            }
            sys::virConnectUnregisterCloseCallback(conn, Some(on_close));
            if self.timer >= 0 {
                sys::virEventRemoveTimeout(self.timer);
            }
        }
    }
}
