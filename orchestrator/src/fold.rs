//! Folding `perf script` text into unique stacks.
//!
//! Streaming and parallel: the input (plain or zstd) is read in blocks, cut at sample
//! boundaries (blank lines) and folded by worker threads into per-thread maps of
//! unique stacks, merged at the end. Memory grows with the number of unique stacks and
//! functions, never with the number of samples.
//!
//! What real perf prints, and what this reads:
//! - headers `comm pid[/tid] [cpu] time: [period] event:` where every field but comm
//!   and event may be missing (perf 3.x prints `java 19983 cycles:`), comm may contain
//!   spaces, and single-line samples carry their only frame on the header line;
//! - frame lines `addr sym+off (dso)`, normally indented (old perf did not indent),
//!   with `[unknown]` symbols, C++/JS symbols with spaces and parentheses, and
//!   `(inlined)` frames;
//! - `#` comment headers (`perf script --header`) and kdelta's own repeat markers
//!   `# kdelta-repeat: N`, which split one file into the workload's repeats.
//!
//! Malformed lines are counted and the first few reported with their line number as
//! warnings; they never abort the fold.

use std::io::{self, Read};
use std::path::Path;
use std::sync::{mpsc, Mutex};

use memchr::memmem;
use rustc_hash::FxHashMap;

/// Marker kdelta writes between the repeats of one capture.
pub const REPEAT_MARKER: &str = "# kdelta-repeat: ";

/// What kind of frame an interned name is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FrameKind {
    User,
    Kernel,
    /// The process name, kept as the root frame of every stack (as flame graphs do).
    Comm,
}

/// One folded capture.
#[derive(Debug, Default)]
pub struct Profile {
    /// Interned function names, indexed by frame id.
    pub names: Vec<String>,
    pub kinds: Vec<FrameKind>,
    /// Unique stacks of the dominant event: frame ids leaf first, the comm frame last.
    pub stacks: Vec<Stack>,
    /// Name of the event the stacks are of (the most sampled one).
    pub event: String,
    /// Other events seen and their sample counts (ignored for the analysis).
    pub other_events: Vec<(String, u64)>,
    pub samples: u64,
    pub idle_samples: u64,
    /// Number of repeats seen (1 when the file has no repeat markers).
    pub repeats: u32,
    pub warnings: Vec<String>,
    /// Lines that could not be read.
    pub malformed_lines: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone)]
pub struct Stack {
    pub frames: Box<[u32]>,
    pub repeat: u32,
    pub idle: bool,
    pub count: u64,
    pub period: u64,
}

impl Profile {
    pub fn busy_samples(&self) -> u64 {
        self.samples - self.idle_samples
    }

    pub fn idle_share(&self) -> f64 {
        if self.samples == 0 {
            0.0
        } else {
            self.idle_samples as f64 / self.samples as f64
        }
    }

    /// Busy samples per repeat (index = repeat - 1).
    pub fn busy_per_repeat(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.repeats.max(1) as usize];
        for s in self.stacks.iter().filter(|s| !s.idle) {
            if let Some(slot) = v.get_mut(s.repeat.saturating_sub(1) as usize) {
                *slot += s.count;
            }
        }
        v
    }

    /// Folded text (`comm;root;…;leaf count`), the input of inferno's flame graphs.
    /// `busy_only` drops idle stacks so graphs of differently loaded hosts compare.
    pub fn write_folded(&self, mut w: impl io::Write, busy_only: bool) -> io::Result<()> {
        let mut merged: FxHashMap<&[u32], u64> = FxHashMap::default();
        for s in &self.stacks {
            if busy_only && s.idle {
                continue;
            }
            *merged.entry(&s.frames).or_default() += s.count;
        }
        let mut lines: Vec<String> = merged
            .into_iter()
            .map(|(frames, count)| {
                let mut line = String::new();
                for (i, &f) in frames.iter().rev().enumerate() {
                    if i > 0 {
                        line.push(';');
                    }
                    // `;` separates frames in folded text: never let a symbol add one.
                    line.push_str(&self.names[f as usize].replace(';', ":"));
                }
                line.push(' ');
                line.push_str(&count.to_string());
                line
            })
            .collect();
        lines.sort_unstable();
        for line in lines {
            writeln!(w, "{line}")?;
        }
        Ok(())
    }
}

/// Options for [`fold_reader`].
#[derive(Clone, Debug)]
pub struct FoldOptions {
    /// Worker threads. Default: the machine's parallelism, at most 8.
    pub threads: usize,
    /// Size of the blocks handed to workers. Default 8 MiB.
    pub block_size: usize,
    /// How many malformed lines to describe in warnings. Default 5.
    pub max_warnings: usize,
}

impl Default for FoldOptions {
    fn default() -> Self {
        FoldOptions {
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(8),
            block_size: 8 << 20,
            max_warnings: 5,
        }
    }
}

/// Folds a `perf.script` or `perf.script.zst` file.
pub fn fold_file(path: &Path, opts: &FoldOptions) -> io::Result<Profile> {
    let file = std::fs::File::open(path)?;
    let is_zst = path.extension().is_some_and(|e| e == "zst");
    let label = path.display().to_string();
    if is_zst {
        let cut = std::cell::Cell::new(None);
        let dec = CutShort {
            inner: zstd::stream::read::Decoder::new(file)?,
            cut: &cut,
        };
        let mut p = fold_reader(dec, &label, opts)?;
        if let Some(e) = cut.take() {
            p.warnings.insert(
                0,
                format!("{label}: the compressed data ends cut short ({e}): what came before it is used"),
            );
        }
        Ok(p)
    } else {
        fold_reader(file, &label, opts)
    }
}

/// Ends a zstd stream at its first broken frame instead of failing: a kdelta killed
/// while it appended a repeat leaves a cut-short last frame; the repeats before it
/// are whole and worth analysing. The error is kept for a warning.
struct CutShort<'a, R> {
    inner: R,
    cut: &'a std::cell::Cell<Option<String>>,
}

impl<R: Read> Read for CutShort<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                // Reads after this one also end: the fold stops at the first 0.
                self.cut.set(Some(e.to_string()));
                Ok(0)
            }
            other => other,
        }
    }
}

/// A block of whole samples, with the repeat in force where it starts and the number
/// of its first line.
struct Block {
    data: Vec<u8>,
    repeat: u32,
    first_line: u64,
}

/// Folds `perf script` text from any reader.
pub fn fold_reader(mut input: impl Read, label: &str, opts: &FoldOptions) -> io::Result<Profile> {
    let threads = opts.threads.max(1);
    let (tx, rx) = mpsc::sync_channel::<Block>(threads * 2);
    let rx = Mutex::new(rx);
    let marker = memmem::Finder::new(b"\n# kdelta-repeat: ");

    let mut total_bytes = 0u64;
    let mut max_repeat = 0u32;
    let partials: Vec<Partial> = std::thread::scope(|scope| -> io::Result<Vec<Partial>> {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let rx = &rx;
                scope.spawn(move || {
                    let mut p = Partial::default();
                    loop {
                        let block = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => break,
                        };
                        let Ok(block) = block else { break };
                        p.fold_block(&block, opts.max_warnings);
                    }
                    p
                })
            })
            .collect();

        // The reader loop: cut blocks at the last blank line, carry the rest over.
        let mut carry: Vec<u8> = Vec::new();
        let mut repeat = 1u32;
        let mut line_no = 1u64;
        let mut eof = false;
        let mut read_err = None;
        while !eof {
            let mut buf = std::mem::take(&mut carry);
            let start = buf.len();
            buf.resize(start + opts.block_size, 0);
            let mut filled = start;
            while filled < buf.len() {
                match input.read(&mut buf[filled..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        read_err = Some(e);
                        eof = true;
                        break;
                    }
                }
            }
            buf.truncate(filled);
            total_bytes += (filled - start) as u64;
            let cut = if eof {
                buf.len()
            } else {
                match memmem::rfind(&buf, b"\n\n") {
                    Some(i) => i + 2,
                    // One sample bigger than a block: keep reading into it.
                    None => {
                        carry = buf;
                        continue;
                    }
                }
            };
            carry = buf.split_off(cut);
            let block_repeat = repeat;
            // Find repeat markers so the next block knows which repeat it starts in.
            if buf.starts_with(REPEAT_MARKER.as_bytes()) {
                repeat = parse_marker(&buf).unwrap_or(repeat);
            }
            for pos in marker.find_iter(&buf) {
                repeat = parse_marker(&buf[pos + 1..]).unwrap_or(repeat);
            }
            max_repeat = max_repeat.max(repeat);
            let lines = memchr::memchr_iter(b'\n', &buf).count() as u64;
            let block = Block {
                data: buf,
                repeat: block_repeat,
                first_line: line_no,
            };
            line_no += lines;
            if tx.send(block).is_err() {
                break;
            }
        }
        drop(tx);
        let parts = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect();
        match read_err {
            Some(e) => Err(io::Error::new(
                e.kind(),
                format!("{label}: read failed after {total_bytes} bytes: {e}"),
            )),
            None => Ok(parts),
        }
    })?;

    let mut profile = merge(partials, opts.max_warnings);
    profile.bytes = total_bytes;
    profile.repeats = profile.repeats.max(max_repeat).max(1);
    for w in &mut profile.warnings {
        *w = format!("{label}:{w}");
    }
    Ok(profile)
}

fn parse_marker(line_start: &[u8]) -> Option<u32> {
    let rest = line_start.strip_prefix(REPEAT_MARKER.as_bytes())?;
    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()?.trim().parse().ok()
}

/// Classes of functions that decide whether a sample is idle.
const CLASS_IDLE: u8 = 1;
const CLASS_IRQ: u8 = 2;

/// Functions of the idle loop, as seen in x86/arm64 kernels from 3.x to 6.x and in
/// Xen/KVM/Hyper-V guests.
const IDLE_FUNCS: &[&str] = &[
    "cpu_idle",
    "cpu_idle_loop",
    "do_idle",
    "cpu_startup_entry",
    "cpuidle_idle_call",
    "default_idle_call",
    "cpuidle_enter",
    "cpuidle_enter_state",
    "arch_cpu_idle",
    "default_idle",
    "native_safe_halt",
    "pv_native_safe_halt",
    "xen_safe_halt",
    "safe_halt",
    "mwait_idle",
    "mwait_idle_with_hints",
    "intel_idle",
    "intel_idle_irq",
    "acpi_idle_enter",
    "acpi_idle_do_entry",
    "acpi_safe_halt",
    "poll_idle",
    "cpu_idle_poll",
    "amd_e400_idle",
    "hv_native_safe_halt",
    "cpu_do_idle",
    "psci_idle_enter",
    "arch_cpu_idle_enter",
    "wait_for_interrupt",
];

/// Interrupt or softirq entry: work done on top of the idle loop is busy time.
fn is_irq_entry(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "asm_sysvec_",
        "sysvec_",
        "__sysvec_",
        "asm_common_interrupt",
        "common_interrupt",
        "do_IRQ",
        "irq_exit",
        "__irq_exit_rcu",
        "__do_softirq",
        "handle_softirqs",
        "do_softirq",
        "smp_apic_timer_interrupt",
        "apic_timer_interrupt",
        "ret_from_intr",
        "xen_evtchn_do_upcall",
        "xen_do_hypervisor_callback",
        "el1_interrupt",
        "gic_handle_irq",
        "handle_irq_event",
        "net_rx_action",
        "asm_exc_",
        "exc_",
        "nmi",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

fn classify(name: &str) -> u8 {
    if IDLE_FUNCS.contains(&name) {
        CLASS_IDLE
    } else if is_irq_entry(name) {
        CLASS_IRQ
    } else {
        0
    }
}

/// The fold of some blocks, with its own interner.
#[derive(Default)]
struct Partial {
    intern: FxHashMap<Box<[u8]>, u32>,
    names: Vec<Box<[u8]>>,
    kinds: Vec<FrameKind>,
    classes: Vec<u8>,
    events: Vec<Box<[u8]>>,
    /// Key: [header, frames…] where header = repeat << 9 | event << 1 | idle.
    stacks: FxHashMap<Box<[u32]>, (u64, u64)>,
    warnings: Vec<String>,
    malformed: u64,
    max_repeat: u32,
}

/// The sample being read.
struct Current {
    header_ok: bool,
    pid0: bool,
    period: u64,
    event: u32,
    comm: u32,
    frames: Vec<u32>,
}

impl Partial {
    fn intern(&mut self, name: &[u8], kind: FrameKind) -> u32 {
        // Comm frames live in their own namespace so a process called like a
        // function never merges with it.
        let mut key_buf;
        let key: &[u8] = if kind == FrameKind::Comm {
            key_buf = Vec::with_capacity(name.len() + 1);
            key_buf.push(0);
            key_buf.extend_from_slice(name);
            &key_buf
        } else {
            name
        };
        if let Some(&id) = self.intern.get(key) {
            // A name seen first as user code may later show as kernel (or the
            // reverse) only when perf is confused; keep the first kind.
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(name.into());
        self.kinds.push(kind);
        self.classes.push(if kind == FrameKind::Kernel {
            classify(&String::from_utf8_lossy(name))
        } else {
            0
        });
        self.intern.insert(key.into(), id);
        id
    }

    fn event_id(&mut self, ev: &[u8]) -> u32 {
        if let Some(i) = self.events.iter().position(|e| &**e == ev) {
            return i as u32;
        }
        self.events.push(ev.into());
        (self.events.len() - 1) as u32
    }

    fn warn(&mut self, max: usize, line: u64, what: &str, text: &[u8]) {
        self.malformed += 1;
        if self.warnings.len() < max {
            let mut t = String::from_utf8_lossy(text).into_owned();
            if t.len() > 80 {
                let mut cut = 80;
                while !t.is_char_boundary(cut) {
                    cut -= 1;
                }
                t.truncate(cut);
                t.push('…');
            }
            self.warnings.push(format!("{line}: {what}: {t:?}"));
        }
    }

    fn fold_block(&mut self, block: &Block, max_warn: usize) {
        let mut repeat = block.repeat;
        let mut cur: Option<Current> = None;
        let mut line_no = block.first_line;
        let data = &block.data[..];
        let mut start = 0usize;
        while start < data.len() {
            let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |i| start + i);
            let mut line = &data[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            start = end + 1;
            let this_line = line_no;
            line_no += 1;

            let first = line.first().copied();
            match first {
                None => {
                    if let Some(c) = cur.take() {
                        self.flush(c, repeat);
                    }
                }
                Some(b'#') => {
                    if let Some(r) = parse_marker(line) {
                        if let Some(c) = cur.take() {
                            self.flush(c, repeat);
                        }
                        repeat = r;
                        self.max_repeat = self.max_repeat.max(r);
                    }
                }
                Some(b' ') | Some(b'\t') => {
                    let trimmed = trim_start(line);
                    if trimmed.is_empty() {
                        if let Some(c) = cur.take() {
                            self.flush(c, repeat);
                        }
                        continue;
                    }
                    // Indented frame line; single-line headers are indented by
                    // `perf script` too (`           false 39654 …`): tell them apart.
                    if cur.is_some() {
                        if let Some((name, kind)) = parse_frame(trimmed) {
                            let id = self.intern(name, kind);
                            if let Some(c) = cur.as_mut() {
                                c.frames.push(id);
                            }
                        } else if let Some(c) = self.parse_header(trimmed) {
                            if let Some(prev) = cur.replace(c) {
                                self.flush(prev, repeat);
                            }
                        } else {
                            self.warn(max_warn, this_line, "unreadable stack line", line);
                        }
                    } else if let Some(c) = self.parse_header(trimmed) {
                        cur = Some(c);
                    } else {
                        self.warn(max_warn, this_line, "stack line outside a sample", line);
                    }
                }
                Some(_) => {
                    // Old perf printed frames unindented right below the header.
                    if cur.as_ref().is_some_and(|c| c.header_ok) && looks_like_frame(line) {
                        if let Some((name, kind)) = parse_frame(line) {
                            let id = self.intern(name, kind);
                            if let Some(c) = cur.as_mut() {
                                c.frames.push(id);
                            }
                            continue;
                        }
                    }
                    if let Some(c) = cur.take() {
                        self.flush(c, repeat);
                    }
                    match self.parse_header(line) {
                        Some(c) => cur = Some(c),
                        None => self.warn(max_warn, this_line, "unreadable sample header", line),
                    }
                }
            }
        }
        if let Some(c) = cur.take() {
            self.flush(c, repeat);
        }
        self.max_repeat = self.max_repeat.max(repeat);
    }

    /// Reads `comm pid[/tid] [cpu] time: [period] event: [ip sym (dso)]`.
    fn parse_header(&mut self, line: &[u8]) -> Option<Current> {
        let toks: Vec<(usize, &[u8])> = tokens(line).collect();
        // The first token that is a cpu `[003]`, a time `123.456:` or an event `x:`.
        let anchor = toks.iter().position(|(_, t)| {
            is_cpu(t) || is_time(t) || (t.last() == Some(&b':') && t.len() > 1)
        })?;
        if anchor == 0 {
            return None;
        }
        let (pid_at, comm_end) = if is_pid(toks[anchor - 1].1) && anchor >= 2 {
            (Some(anchor - 1), anchor - 1)
        } else {
            (None, anchor)
        };
        let comm_start = toks[0].0;
        let comm_last = toks[comm_end - 1];
        let comm = &line[comm_start..comm_last.0 + comm_last.1.len()];
        let pid0 = pid_at.is_some_and(|i| {
            let t = toks[i].1;
            t == b"0" || t.starts_with(b"0/")
        });

        let mut i = anchor;
        while i < toks.len() && (is_cpu(toks[i].1) || is_time(toks[i].1)) {
            i += 1;
        }
        let mut period = 1u64;
        if let Some((_, t)) = toks.get(i) {
            if t.iter().all(u8::is_ascii_digit) {
                period = parse_u64(t).unwrap_or(1).max(1);
                i += 1;
            }
        }
        let (ev_pos, ev) = *toks.get(i)?;
        if ev.last() != Some(&b':') {
            return None;
        }
        let ev = normalize_event(&ev[..ev.len() - 1]);
        let event = self.event_id(ev);
        let comm = self.intern(comm, FrameKind::Comm);
        let mut c = Current {
            header_ok: true,
            pid0,
            period,
            event,
            comm,
            frames: Vec::with_capacity(32),
        };
        // Single-line samples: the frame follows the event on the same line.
        let rest = trim_start(&line[ev_pos + ev.len() + 1..]);
        if !rest.is_empty() {
            if let Some((name, kind)) = parse_frame(rest) {
                let id = self.intern(name, kind);
                c.frames.push(id);
            }
        }
        Some(c)
    }

    fn flush(&mut self, c: Current, repeat: u32) {
        // Idle: the nearest of (idle-loop function, interrupt entry) to the leaf is the
        // idle loop; or no stack at all on the idle task.
        let mut idle = c.frames.is_empty() && c.pid0;
        for &f in &c.frames {
            match self.classes[f as usize] {
                CLASS_IDLE => {
                    idle = true;
                    break;
                }
                CLASS_IRQ => break,
                _ => {}
            }
        }
        let header = (repeat.min(0x7f_ffff) << 9) | ((c.event.min(0xff)) << 1) | idle as u32;
        let mut key = c.frames;
        key.insert(0, header);
        key.push(c.comm);
        if let Some(v) = self.stacks.get_mut(&key[..]) {
            v.0 += 1;
            v.1 += c.period;
        } else {
            self.stacks.insert(key.into_boxed_slice(), (1, c.period));
        }
    }
}

fn merge(parts: Vec<Partial>, max_warn: usize) -> Profile {
    let mut p = Profile::default();
    let mut intern: FxHashMap<(Box<[u8]>, FrameKind), u32> = FxHashMap::default();
    let mut events: Vec<Box<[u8]>> = Vec::new();
    let mut event_counts: Vec<u64> = Vec::new();
    let mut merged: FxHashMap<Box<[u32]>, (u64, u64)> = FxHashMap::default();
    let mut malformed = 0;
    for part in parts {
        malformed += part.malformed;
        p.warnings.extend(part.warnings);
        p.repeats = p.repeats.max(part.max_repeat);
        let remap: Vec<u32> = part
            .names
            .iter()
            .zip(&part.kinds)
            .map(|(n, &k)| {
                let next = p.names.len() as u32;
                *intern.entry((n.clone(), k)).or_insert_with(|| {
                    p.names.push(String::from_utf8_lossy(n).into_owned());
                    p.kinds.push(k);
                    next
                })
            })
            .collect();
        let ev_map: Vec<u32> = part
            .events
            .iter()
            .map(|e| match events.iter().position(|x| x == e) {
                Some(i) => i as u32,
                None => {
                    events.push(e.clone());
                    event_counts.push(0);
                    (events.len() - 1) as u32
                }
            })
            .collect();
        for (key, (count, period)) in part.stacks {
            let header = key[0];
            let ev = ev_map[((header >> 1) & 0xff) as usize];
            event_counts[ev as usize] += count;
            let mut nk: Vec<u32> = Vec::with_capacity(key.len());
            nk.push((header & !(0xff << 1)) | (ev << 1));
            nk.extend(key[1..].iter().map(|&f| remap[f as usize]));
            let e = merged.entry(nk.into_boxed_slice()).or_default();
            e.0 += count;
            e.1 += period;
        }
    }
    p.warnings.truncate(max_warn);
    p.malformed_lines = malformed;
    let main_event = event_counts
        .iter()
        .enumerate()
        .max_by_key(|(_, c)| **c)
        .map(|(i, _)| i as u32);
    if let Some(main) = main_event {
        p.event = String::from_utf8_lossy(&events[main as usize]).into_owned();
        for (i, e) in events.iter().enumerate() {
            if i as u32 != main {
                p.other_events
                    .push((String::from_utf8_lossy(e).into_owned(), event_counts[i]));
            }
        }
        for (key, (count, period)) in merged {
            let header = key[0];
            if (header >> 1) & 0xff != main {
                continue;
            }
            let idle = header & 1 == 1;
            p.samples += count;
            if idle {
                p.idle_samples += count;
            }
            p.stacks.push(Stack {
                frames: key[1..].into(),
                repeat: (header >> 9).max(1),
                idle,
                count,
                period,
            });
        }
    }
    // Deterministic order for everything downstream.
    p.stacks
        .sort_unstable_by(|a, b| b.count.cmp(&a.count).then(a.frames.cmp(&b.frames)));
    p
}

/// `cycles:u`, `cpu-clock:pppH` → `cycles`, `cpu-clock`; `sched:sched_switch` stays.
fn normalize_event(ev: &[u8]) -> &[u8] {
    match memchr::memrchr(b':', ev) {
        Some(i) if i > 0 && ev[i + 1..].iter().all(|b| b"ukhGHpPSDIWe".contains(b)) => &ev[..i],
        _ => ev,
    }
}

fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

fn tokens(line: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            return None;
        }
        let s = i;
        while i < line.len() && !line[i].is_ascii_whitespace() {
            i += 1;
        }
        Some((s, &line[s..i]))
    })
}

fn is_pid(t: &[u8]) -> bool {
    let mut parts = t.split(|&b| b == b'/');
    let ok =
        |p: Option<&[u8]>| p.is_some_and(|p| !p.is_empty() && p.iter().all(u8::is_ascii_digit));
    let a = parts.next();
    match (ok(a), parts.next(), parts.next()) {
        (true, None, _) => true,
        (true, Some(b), None) => ok(Some(b)),
        _ => false,
    }
}

fn is_cpu(t: &[u8]) -> bool {
    t.len() >= 3
        && t[0] == b'['
        && t[t.len() - 1] == b']'
        && t[1..t.len() - 1].iter().all(u8::is_ascii_digit)
}

fn is_time(t: &[u8]) -> bool {
    let Some(body) = t.strip_suffix(b":") else {
        return false;
    };
    let mut dot = false;
    !body.is_empty()
        && body.iter().all(|&b| {
            if b == b'.' && !dot {
                dot = true;
                true
            } else {
                b.is_ascii_digit()
            }
        })
        && dot
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// `ffffffff81000000 sym+0x1f (dso)` without leading blanks: is it a frame line?
fn looks_like_frame(line: &[u8]) -> bool {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    hex_len >= 1 && line.get(hex_len) == Some(&b' ') && line.last() == Some(&b')')
}

/// Splits `addr sym+off (dso)` into the function name and its kind.
fn parse_frame(line: &[u8]) -> Option<(&[u8], FrameKind)> {
    let hex_len = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if hex_len == 0 {
        return None;
    }
    let rest = trim_start(&line[hex_len..]);
    if rest.len() == line.len() - hex_len && !rest.is_empty() {
        // No space after the address: not a frame.
        return None;
    }
    // The dso is the last parenthesised group; symbols may contain parentheses.
    let (sym, dso) = match rest.last() {
        Some(b')') => match memmem::rfind(rest, b" (") {
            Some(i) => (&rest[..i], &rest[i + 2..rest.len() - 1]),
            None if rest.first() == Some(&b'(') => (&rest[..0], &rest[1..rest.len() - 1]),
            None => (rest, &rest[..0]),
        },
        _ => (rest, &rest[..0]),
    };
    let kind = if dso.starts_with(b"[kernel")
        || dso.ends_with(b".ko")
        || dso.ends_with(b"vmlinux")
        || dso.starts_with(b"bpf_prog_")
        || dso.starts_with(b"[bpf")
        || memmem::find(dso, b"/vmlinux").is_some()
    {
        FrameKind::Kernel
    } else {
        FrameKind::User
    };
    let sym = strip_clone_suffix(strip_offset(sym));
    if sym.is_empty() || sym == b"[unknown]" {
        // Name unknown frames after their object, as inferno does.
        let base = match memchr::memrchr(b'/', dso) {
            Some(i) => &dso[i + 1..],
            None => dso,
        };
        return Some((
            if base.is_empty() || base == b"[unknown]" {
                b"[unknown]"
            } else {
                // The caller interns this slice; bracketing happens in display.
                base
            },
            kind,
        ));
    }
    Some((sym, kind))
}

/// `tcp_ack+0x1f` → `tcp_ack`. Leaves `+` inside C++ names (`operator+`) alone.
fn strip_offset(sym: &[u8]) -> &[u8] {
    if let Some(i) = memchr::memrchr(b'+', sym) {
        let off = &sym[i + 1..];
        if off.starts_with(b"0x") && off[2..].iter().all(u8::is_ascii_hexdigit) && i > 0 {
            return &sym[..i];
        }
    }
    sym
}

/// `handle_softirqs.constprop.0` → `handle_softirqs`: the compiler's clones of one
/// function (constant propagation, IPA-SRA, split cold parts, LTO privatisation) get
/// different suffixes in different builds; one name per source function lets two
/// kernels be compared function by function.
fn strip_clone_suffix(sym: &[u8]) -> &[u8] {
    const MARKS: &[&[u8]] = &[
        b".constprop.",
        b".isra.",
        b".part.",
        b".cold",
        b".llvm.",
        b".lto_priv.",
    ];
    // Most names have no dot: one memchr and out (this runs for every frame).
    let Some(first_dot) = memchr::memchr(b'.', sym) else {
        return sym;
    };
    if first_dot == 0 || sym.first() == Some(&b'[') || sym.contains(&b' ') {
        return sym;
    }
    let sym_tail = &sym[first_dot..];
    let cut = MARKS
        .iter()
        .filter_map(|m| memchr::memmem::find(sym_tail, m))
        .min();
    match cut {
        Some(i) => &sym[..first_dot + i],
        None => sym,
    }
}

/// Reads a small `perf script` text in memory (tests, tools).
pub fn fold_str(text: &str) -> Profile {
    let opts = FoldOptions {
        threads: 1,
        ..FoldOptions::default()
    };
    // Reading from memory cannot fail.
    fold_reader(text.as_bytes(), "<memory>", &opts).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
iperf3  1234/1235 [001] 12345.678901:   10101010 cpu-clock:pppH: 
\tffffffff81234567 tcp_ack+0x17 ([kernel.kallsyms])
\tffffffff81234568 tcp_rcv_established+0x1 ([kernel.kallsyms])
\t    7f1234 __libc_send+0x1 (/usr/lib/x86_64-linux-gnu/libc.so.6)

swapper     0 [000] 12345.679: 10101010 cpu-clock:pppH: 
\tffffffff81000001 pv_native_safe_halt+0x5 ([kernel.kallsyms])
\tffffffff81000002 default_idle+0x5 ([kernel.kallsyms])
\tffffffff81000003 do_idle+0x5 ([kernel.kallsyms])

swapper     0 [000] 12345.680: 10101010 cpu-clock:pppH: 
\tffffffff81000009 nft_do_chain+0x5 ([kernel.kallsyms])
\tffffffff8100000a net_rx_action+0x5 ([kernel.kallsyms])
\tffffffff8100000b __do_softirq+0x5 ([kernel.kallsyms])
\tffffffff81000002 default_idle+0x5 ([kernel.kallsyms])
\tffffffff81000003 do_idle+0x5 ([kernel.kallsyms])

";

    #[test]
    fn reads_header_frames_and_idle() {
        let p = fold_str(SAMPLE);
        assert_eq!(p.samples, 3);
        assert_eq!(p.idle_samples, 1, "softirq on the idle task is busy time");
        assert_eq!(p.event, "cpu-clock");
        let top = p
            .stacks
            .iter()
            .find(|s| p.names[s.frames[0] as usize] == "tcp_ack")
            .expect("tcp_ack stack");
        assert_eq!(p.kinds[top.frames[0] as usize], FrameKind::Kernel);
        assert_eq!(p.names[*top.frames.last().unwrap() as usize], "iperf3");
        assert_eq!(p.names[top.frames[2] as usize], "__libc_send");
        assert_eq!(p.kinds[top.frames[2] as usize], FrameKind::User);
    }

    #[test]
    fn repeats_and_events() {
        let text = format!(
            "{REPEAT_MARKER}1\n{SAMPLE}{REPEAT_MARKER}2\n{SAMPLE}\
             perf 1 [000] 1.0: 1 page-faults: \n\tffffffff81000009 handle_mm_fault+0x5 ([kernel.kallsyms])\n\n"
        );
        let p = fold_str(&text);
        assert_eq!(p.repeats, 2);
        assert_eq!(p.samples, 6);
        assert_eq!(p.busy_per_repeat(), vec![2, 2]);
        assert_eq!(p.other_events, vec![("page-faults".to_string(), 1)]);
    }

    /// One zstd frame per repeat, as kdelta appends them; a kill during the append
    /// of the second leaves half a frame: the first repeat is still read, with a warning.
    #[test]
    fn frames_per_repeat_and_a_cut_short_last_frame() {
        let frame = |rep: u32| {
            zstd::stream::encode_all(format!("\n{REPEAT_MARKER}{rep}\n{SAMPLE}").as_bytes(), 3)
                .unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf.script.zst");
        let (one, two) = (frame(1), frame(2));
        std::fs::write(&path, [one.clone(), two.clone()].concat()).unwrap();
        let p = fold_file(&path, &FoldOptions::default()).unwrap();
        assert_eq!((p.repeats, p.samples), (2, 6));
        assert!(p.warnings.is_empty(), "{:?}", p.warnings);
        std::fs::write(&path, [one, two[..two.len() / 2].to_vec()].concat()).unwrap();
        let p = fold_file(&path, &FoldOptions::default()).unwrap();
        assert_eq!((p.repeats, p.samples), (1, 3));
        assert!(p.warnings[0].contains("cut short"), "{:?}", p.warnings);
    }

    #[test]
    fn old_perf_unindented_and_no_time() {
        let text = "java 19983 cycles:\nffffffff8103d0ca native_write_msr_safe ([kernel.kallsyms])\n7f00 Interpreter (/tmp/perf-1.map)\n\n";
        let p = fold_str(text);
        assert_eq!(p.samples, 1);
        assert_eq!(p.stacks[0].frames.len(), 3);
        assert_eq!(
            p.names[p.stacks[0].frames[0] as usize],
            "native_write_msr_safe"
        );
    }

    #[test]
    fn compiler_clones_read_as_their_function() {
        assert_eq!(
            strip_clone_suffix(b"handle_softirqs.constprop.0"),
            b"handle_softirqs"
        );
        assert_eq!(
            strip_clone_suffix(b"finish_task_switch.isra.0"),
            b"finish_task_switch"
        );
        assert_eq!(strip_clone_suffix(b"do_softirq.part.0"), b"do_softirq");
        assert_eq!(strip_clone_suffix(b"foo.constprop.0.isra.0"), b"foo");
        assert_eq!(strip_clone_suffix(b"bar.cold"), b"bar");
        assert_eq!(strip_clone_suffix(b"tcp_ack"), b"tcp_ack");
        assert_eq!(strip_clone_suffix(b"[unknown]"), b"[unknown]");
        let p = fold_str("iperf3 1 [000] 1.0: 1 cpu-clock: \n\tffffffff81000001 handle_softirqs.constprop.0+0x5 ([kernel.kallsyms])\n\tffffffff81000002 do_softirq.part.0+0x1 ([kernel.kallsyms])\n\n");
        assert!(
            p.names.iter().any(|n| n == "handle_softirqs"),
            "{:?}",
            p.names
        );
        assert!(p.names.iter().any(|n| n == "do_softirq"), "{:?}", p.names);
    }

    #[test]
    fn symbols_with_spaces_and_unknown() {
        let text = "node 31912 cpu-clock: \n\t13a80b608e0a LazyCompile:~body_0 evalmachine.<anonymous>:1 (/tmp/perf-31912.map)\n\t5966605dd52f8e00 [unknown] ([unknown])\n\t7f00 [unknown] (/usr/lib/libc-2.28.so)\n\n";
        let p = fold_str(text);
        let names: Vec<&str> = p.stacks[0]
            .frames
            .iter()
            .map(|&f| p.names[f as usize].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "LazyCompile:~body_0 evalmachine.<anonymous>:1",
                "[unknown]",
                "libc-2.28.so",
                "node"
            ]
        );
    }

    #[test]
    fn single_line_samples() {
        let text = "           false 39654 19115.489713:          1 cycles:u:  ffffffff9b201293 [unknown] ([unknown])\n           false 39654 19115.489719:          1 cycles:      7fa68b1f2d84 _dl_start+0x4 (/usr/lib/ld-2.31.so)\n";
        let p = fold_str(text);
        assert_eq!(p.samples, 2, "{:?}", p.warnings);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let text = "inline-counter 26037  8801.194312:     250000 cpu-clock:uhH:\n\t          THIS_IS_A_WEIRD_LINE\n\nnot a header at all\n";
        let p = fold_str(text);
        assert_eq!(p.samples, 1);
        assert_eq!(p.malformed_lines, 2, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("<memory>:2:"), "{:?}", p.warnings);
    }

    #[test]
    fn block_boundaries_do_not_change_the_result() {
        let mut text = String::new();
        for r in 1..=3 {
            text.push_str(&format!("{REPEAT_MARKER}{r}\n"));
            for _ in 0..50 {
                text.push_str(SAMPLE);
            }
        }
        let one = fold_str(&text);
        let opts = FoldOptions {
            threads: 3,
            block_size: 97,
            max_warnings: 5,
        };
        let many = fold_reader(text.as_bytes(), "x", &opts).unwrap();
        assert_eq!(one.samples, many.samples);
        assert_eq!(one.busy_per_repeat(), many.busy_per_repeat());
        assert_eq!(many.busy_per_repeat(), vec![100, 100, 100]);
        let mut a = Vec::new();
        let mut b = Vec::new();
        one.write_folded(&mut a, false).unwrap();
        many.write_folded(&mut b, false).unwrap();
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    }
}
