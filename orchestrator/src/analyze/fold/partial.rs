//! The fold of some blocks of `perf script` text by one worker, with its own
//! interner, and the merge of the workers' folds into a [`Profile`].

use rustc_hash::FxHashMap;

use super::idle::{classify, is_idle};
use super::line::*;
use super::reader::{parse_marker, Block};
use super::{FrameKind, Membership, Profile, Stack, Weighting};

/// The fold of some blocks, with its own interner.
#[derive(Default)]
pub(super) struct Partial {
    /// One interner per frame kind: a name seen as kernel code and as user code
    /// (`[unknown]`, mostly) is two frames, whatever block saw which first, so the
    /// fold does not depend on how the input was cut among workers.
    intern: [FxHashMap<Box<[u8]>, u32>; 3],
    names: Vec<Box<[u8]>>,
    kinds: Vec<FrameKind>,
    classes: Vec<u8>,
    /// Per frame id: the module its frames named (an index into `modules`).
    membership: Vec<Membership>,
    /// Module names as /proc/modules spells them (dashes made underscores).
    modules: Vec<Box<[u8]>>,
    events: Vec<Box<[u8]>>,
    /// Key: [header, frames…] where header = repeat << 9 | event << 1 | idle.
    /// Value: (samples, period sum, sum of squared periods).
    stacks: FxHashMap<Box<[u32]>, (u64, u64, f64)>,
    /// The first warnings of this worker's blocks, with their line numbers.
    warnings: Vec<(u64, String)>,
    malformed: u64,
    max_repeat: u32,
    /// Samples without one readable frame, per event id: dropped, as inferno does.
    dropped: Vec<u64>,
    /// Kept samples whose header has no period (any event).
    without_period: u64,
}

/// The sample being read.
struct Current {
    header_ok: bool,
    /// The sample's period as printed (`perf script -F period`); perf 3.x and
    /// some field selections print none.
    period: Option<u64>,
    event: u32,
    comm: u32,
    frames: Vec<u32>,
}

impl Partial {
    fn intern(&mut self, f: &Frame<'_>) -> u32 {
        // Comm frames live in their own namespace too, so a process called like a
        // function never merges with it.
        let slot = match f.kind {
            FrameKind::User => 0,
            FrameKind::Kernel => 1,
            FrameKind::Comm => 2,
        };
        if let Some(&id) = self.intern[slot].get(f.name) {
            self.note_module(id, f.module);
            return id;
        }
        let id = self.names.len() as u32;
        self.names.push(f.name.into());
        self.kinds.push(f.kind);
        self.classes.push(if f.kind == FrameKind::Kernel {
            classify(&String::from_utf8_lossy(f.name))
        } else {
            0
        });
        let m = if f.module.is_empty() {
            Membership::None
        } else {
            Membership::Module(self.module_id(f.module))
        };
        self.membership.push(m);
        self.intern[slot].insert(f.name.into(), id);
        id
    }

    /// Keeps a frame's module as its first frame named it; a name met in two
    /// places (two modules, or vmlinux and a module) belongs to neither for sure.
    /// Costs one comparison per frame: most frames are vmlinux's (None, None).
    fn note_module(&mut self, id: u32, module: &[u8]) {
        let Some(&cur) = self.membership.get(id as usize) else {
            return;
        };
        let same = match cur {
            Membership::Several => return,
            Membership::None => module.is_empty(),
            Membership::Module(m) => {
                !module.is_empty()
                    && (self.modules.get(m as usize).is_some_and(|n| **n == *module)
                        || self.module_id(module) == m)
            }
        };
        if !same {
            self.membership[id as usize] = Membership::Several;
        }
    }

    /// The index of a module's name (dashes made underscores, as /proc/modules and
    /// facts.json spell it: `snd-hda-intel.ko` is module `snd_hda_intel`).
    fn module_id(&mut self, raw: &[u8]) -> u16 {
        let name: Vec<u8> = raw
            .iter()
            .map(|&b| if b == b'-' { b'_' } else { b })
            .collect();
        if let Some(i) = self.modules.iter().position(|m| **m == *name) {
            return i as u16;
        }
        // More modules than u16 holds would be a broken input: share the last slot.
        let i = self.modules.len().min(u16::MAX as usize - 1);
        if i == self.modules.len() {
            self.modules.push(name.into());
        }
        i as u16
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
            self.warnings.push((line, format!("{line}: {what}: {t:?}")));
        }
    }

    pub fn fold_block(&mut self, block: &Block, max_warn: usize) {
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
                        if let Some(f) = parse_frame(trimmed) {
                            let id = self.intern(&f);
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
                        if let Some(f) = parse_frame(line) {
                            let id = self.intern(&f);
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
        let comm_end = if is_pid(toks[anchor - 1].1) && anchor >= 2 {
            anchor - 1
        } else {
            anchor
        };
        let comm_start = toks[0].0;
        let comm_last = toks[comm_end - 1];
        let comm = &line[comm_start..comm_last.0 + comm_last.1.len()];

        let mut i = anchor;
        while i < toks.len() && (is_cpu(toks[i].1) || is_time(toks[i].1)) {
            i += 1;
        }
        let mut period = None;
        if let Some((_, t)) = toks.get(i) {
            if t.iter().all(u8::is_ascii_digit) {
                period = parse_u64(t);
                i += 1;
            }
        }
        let (ev_pos, ev_tok) = *toks.get(i)?;
        if ev_tok.last() != Some(&b':') {
            return None;
        }
        let ev = normalize_event(&ev_tok[..ev_tok.len() - 1]);
        let event = self.event_id(ev);
        let comm = self.intern(&Frame {
            name: comm,
            kind: FrameKind::Comm,
            module: &[],
        });
        let mut c = Current {
            header_ok: true,
            period,
            event,
            comm,
            frames: Vec::with_capacity(32),
        };
        // Single-line samples: the frame follows the event on the same line. Cut after
        // the event token as printed (`cycles:u:`), not its normalized name (`cycles`).
        let rest = trim_start(&line[ev_pos + ev_tok.len()..]);
        if !rest.is_empty() {
            if let Some(f) = parse_frame(rest) {
                let id = self.intern(&f);
                c.frames.push(id);
            }
        }
        Some(c)
    }

    fn flush(&mut self, c: Current, repeat: u32) {
        // A sample with no readable frame would be a stack of the process name only
        // (a busy sample of nothing): drop it and count it, as inferno drops them.
        if c.frames.is_empty() {
            add_at(&mut self.dropped, c.event as usize, 1);
            return;
        }
        // Idle: the CPU was halted (the leaf is a halt function); see `idle`.
        let idle = is_idle(c.frames.iter().map(|&f| self.classes[f as usize]));
        let header = (repeat.min(0x7f_ffff) << 9) | ((c.event.min(0xff)) << 1) | idle as u32;
        let mut key = c.frames;
        key.insert(0, header);
        key.push(c.comm);
        let period = match c.period {
            Some(p) => p,
            None => {
                self.without_period += 1;
                1
            }
        };
        let sq = (period as f64) * (period as f64);
        if let Some(v) = self.stacks.get_mut(&key[..]) {
            v.0 += 1;
            v.1 = v.1.saturating_add(period);
            v.2 += sq;
        } else {
            self.stacks.insert(key.into_boxed_slice(), (1, period, sq));
        }
    }
}

pub(super) fn merge(parts: Vec<Partial>, max_warn: usize) -> Profile {
    let mut p = Profile::default();
    let mut intern: FxHashMap<(Box<[u8]>, FrameKind), u32> = FxHashMap::default();
    let mut events: Vec<Box<[u8]>> = Vec::new();
    let mut event_counts: Vec<u64> = Vec::new();
    let mut merged: FxHashMap<Box<[u32]>, (u64, u64, f64)> = FxHashMap::default();
    let mut malformed = 0;
    let mut warnings = Vec::new();
    let mut dropped: Vec<u64> = Vec::new();
    let mut without_period = 0u64;
    let mut modules: Vec<Box<[u8]>> = Vec::new();
    for mut part in parts {
        malformed += part.malformed;
        without_period += part.without_period;
        warnings.extend(std::mem::take(&mut part.warnings));
        p.repeats = p.repeats.max(part.max_repeat);
        let remap = remap_frames(&part, &mut p, &mut intern, &mut modules);
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
        for (i, &n) in part.dropped.iter().enumerate() {
            if let Some(&ev) = ev_map.get(i) {
                add_at(&mut dropped, ev as usize, n);
            }
        }
        for (key, (count, period, period_sq)) in part.stacks {
            let header = key[0];
            let ev = ev_map[((header >> 1) & 0xff) as usize];
            event_counts[ev as usize] += count;
            let mut nk: Vec<u32> = Vec::with_capacity(key.len());
            nk.push((header & !(0xff << 1)) | (ev << 1));
            nk.extend(key[1..].iter().map(|&f| remap[f as usize]));
            let e = merged.entry(nk.into_boxed_slice()).or_default();
            e.0 += count;
            e.1 = e.1.saturating_add(period);
            e.2 += period_sq;
        }
    }
    // The first warnings of the file, whichever worker read them.
    warnings.sort();
    p.warnings = warnings.into_iter().take(max_warn).map(|w| w.1).collect();
    p.malformed_lines = malformed;
    p.samples_without_period = without_period;
    // Weigh by period as perf report and inferno do, but only when every sample has
    // one: a mix would weigh the period-less samples 1 against periods of millions.
    p.weighted_by = if without_period == 0 && !merged.is_empty() {
        Weighting::Period
    } else {
        Weighting::Samples
    };
    // The most sampled event; on a tie, the first by name (not by which worker
    // happened to see it first).
    // Dropped samples count for their event: a file of frameless samples still
    // names its event.
    for (i, n) in dropped.iter().enumerate() {
        if let Some(c) = event_counts.get_mut(i) {
            *c += n;
        }
    }
    let main_event = (0..events.len())
        .max_by(|&a, &b| {
            event_counts[a]
                .cmp(&event_counts[b])
                .then_with(|| events[b].cmp(&events[a]))
        })
        .map(|i| i as u32);
    if let Some(main) = main_event {
        p.event = String::from_utf8_lossy(&events[main as usize]).into_owned();
        p.dropped_samples = dropped.get(main as usize).copied().unwrap_or(0);
        for (i, e) in events.iter().enumerate() {
            if i as u32 != main {
                p.other_events
                    .push((String::from_utf8_lossy(e).into_owned(), event_counts[i]));
            }
        }
        for (key, (count, period, period_sq)) in merged {
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
                period_sq,
            });
        }
    }
    set_modules(&mut p, modules);
    sort_stacks(&mut p);
    p
}

/// A worker's frame ids in the merged profile, interning what is new there; a
/// frame two workers saw in different places belongs to no module for sure (as
/// `note_module` decides within one worker).
fn remap_frames(
    part: &Partial,
    p: &mut Profile,
    intern: &mut FxHashMap<(Box<[u8]>, FrameKind), u32>,
    modules: &mut Vec<Box<[u8]>>,
) -> Vec<u32> {
    let module_map: Vec<u16> = part
        .modules
        .iter()
        .map(|m| module_index(modules, m))
        .collect();
    part.names
        .iter()
        .zip(&part.kinds)
        .zip(&part.membership)
        .map(|((n, &k), &m)| {
            let m = match m {
                Membership::Module(i) => module_map
                    .get(i as usize)
                    .map_or(Membership::Several, |&g| Membership::Module(g)),
                other => other,
            };
            let next = p.names.len() as u32;
            let id = *intern.entry((n.clone(), k)).or_insert_with(|| {
                p.names.push(String::from_utf8_lossy(n).into_owned());
                p.kinds.push(k);
                p.membership.push(m);
                next
            });
            if p.membership[id as usize] != m {
                p.membership[id as usize] = Membership::Several;
            }
            id
        })
        .collect()
}

fn module_index(modules: &mut Vec<Box<[u8]>>, m: &[u8]) -> u16 {
    match modules.iter().position(|x| **x == *m) {
        Some(i) => i as u16,
        None => {
            modules.push(m.into());
            (modules.len() - 1) as u16
        }
    }
}

/// The module names, sorted (their order of discovery depends on the workers),
/// and each frame's membership pointing into them.
fn set_modules(p: &mut Profile, found: Vec<Box<[u8]>>) {
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| found[a].cmp(&found[b]));
    let mut new_index = vec![0u16; found.len()];
    for (new, &old) in order.iter().enumerate() {
        new_index[old] = new as u16;
    }
    p.modules = order
        .iter()
        .map(|&i| String::from_utf8_lossy(&found[i]).into_owned())
        .collect();
    for m in &mut p.membership {
        if let Membership::Module(i) = m {
            *m = new_index
                .get(*i as usize)
                .map_or(Membership::Several, |&n| Membership::Module(n));
        }
    }
}

/// Adds `n` at `i`, growing `v` as needed.
fn add_at(v: &mut Vec<u64>, i: usize, n: u64) {
    if v.len() <= i {
        v.resize(i + 1, 0);
    }
    v[i] += n;
}

/// Deterministic order for everything downstream: hottest first, then by the
/// frames' names (their ids depend on which worker met them first).
fn sort_stacks(p: &mut Profile) {
    let names = &p.names;
    let by_period = p.weighted_by == Weighting::Period;
    let weight = |s: &Stack| if by_period { s.period } else { s.count };
    p.stacks.sort_unstable_by(|a, b| {
        let name = |f: &u32| names[*f as usize].as_str();
        weight(b)
            .cmp(&weight(a))
            .then_with(|| a.frames.iter().map(name).cmp(b.frames.iter().map(name)))
            .then(a.repeat.cmp(&b.repeat))
            .then(a.idle.cmp(&b.idle))
    });
}
