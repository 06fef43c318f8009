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

use std::io;
use std::path::Path;

use rustc_hash::FxHashMap;

pub use crate::model::Weighting;

mod idle;
mod line;
mod partial;
mod reader;

pub use reader::fold_reader;
use reader::CutShort;

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

/// Which kernel module perf placed a frame's function in: kdelta's copy of the
/// `[module]` tags of /proc/kallsyms, as `perf script` prints them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Membership {
    /// vmlinux, user code, or an object that is no module.
    #[default]
    None,
    /// An index into [`Profile::modules`].
    Module(u16),
    /// The name was met in two places (two modules, or vmlinux and a module): its
    /// frames were merged by name, so it belongs to no one module for sure.
    Several,
}

/// One folded capture.
#[derive(Debug, Default)]
pub struct Profile {
    /// Interned function names, indexed by frame id.
    pub names: Vec<String>,
    pub kinds: Vec<FrameKind>,
    /// Per frame id: the kernel module its frames named.
    pub membership: Vec<Membership>,
    /// The modules frames were placed in, sorted, as /proc/modules spells them
    /// (`snd-hda-intel.ko` is `snd_hda_intel`).
    pub modules: Vec<String>,
    /// Unique stacks of the dominant event: frame ids leaf first, the comm frame last.
    pub stacks: Vec<Stack>,
    /// Name of the event the stacks are of (the most sampled one).
    pub event: String,
    /// Other events seen and their sample counts (ignored for the analysis).
    pub other_events: Vec<(String, u64)>,
    pub samples: u64,
    pub idle_samples: u64,
    /// Samples of the event dropped because no frame of theirs could be read (a
    /// header with an empty or unreadable stack): inferno drops them too.
    pub dropped_samples: u64,
    /// Kept samples (of any event) whose header printed no period.
    pub samples_without_period: u64,
    /// Period when every kept sample had one, else samples.
    pub weighted_by: Weighting,
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
    /// Sum of the squared periods of the samples (for the effective sample size).
    pub period_sq: f64,
}

impl Profile {
    /// The kernel module of a frame, when all its frames named the same one.
    pub fn module_of(&self, id: u32) -> Option<&str> {
        match self.membership.get(id as usize)? {
            Membership::Module(m) => self.modules.get(*m as usize).map(String::as_str),
            _ => None,
        }
    }

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

    /// What a stack weighs in shares: its period sum, or its sample count.
    pub fn weight(&self, s: &Stack) -> u64 {
        match self.weighted_by {
            Weighting::Period => s.period,
            Weighting::Samples => s.count,
        }
    }

    /// Total weight of the busy stacks.
    pub fn busy_weight(&self) -> u64 {
        self.stacks
            .iter()
            .filter(|s| !s.idle)
            .fold(0u64, |a, s| a.saturating_add(self.weight(s)))
    }

    /// Kish's effective sample size of the busy samples, (Σw)²/Σw²: the number of
    /// equally weighted samples that would carry as much information as these
    /// unequally weighted ones. Equals the busy sample count when each weighs 1.
    pub fn busy_effective_samples(&self) -> f64 {
        let (mut sum, mut sq) = (0.0f64, 0.0f64);
        for s in self.stacks.iter().filter(|s| !s.idle) {
            match self.weighted_by {
                Weighting::Period => {
                    sum += s.period as f64;
                    sq += s.period_sq;
                }
                Weighting::Samples => {
                    sum += s.count as f64;
                    sq += s.count as f64;
                }
            }
        }
        if sq > 0.0 {
            sum * sum / sq
        } else {
            0.0
        }
    }

    /// Busy weight per repeat (index = repeat - 1).
    pub fn busy_weight_per_repeat(&self) -> Vec<u64> {
        let mut v = vec![0u64; self.repeats.max(1) as usize];
        for s in self.stacks.iter().filter(|s| !s.idle) {
            if let Some(slot) = v.get_mut(s.repeat.saturating_sub(1) as usize) {
                *slot = slot.saturating_add(self.weight(s));
            }
        }
        v
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

    /// Folded text (`comm;root;…;leaf weight`), the input of inferno's flame graphs,
    /// weighted as the shares are (by period when there are periods, as inferno's
    /// collapse-perf does).
    /// `busy_only` drops idle stacks so graphs of differently loaded hosts compare.
    pub fn write_folded(&self, mut w: impl io::Write, busy_only: bool) -> io::Result<()> {
        let mut merged: FxHashMap<&[u32], u64> = FxHashMap::default();
        for s in &self.stacks {
            if busy_only && s.idle {
                continue;
            }
            *merged.entry(&s.frames).or_default() += self.weight(s);
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
    use super::line::strip_clone_suffix;
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

    /// Issue 14: idle is a halted CPU (halt function as leaf), not "anything on the
    /// idle loop's stack": scheduler and tick work of the idle task, polling idle and
    /// old kernels' IPI entries on an idle CPU are busy.
    #[test]
    fn idle_means_halted() {
        let sample = |frames: &[&str]| {
            let mut t = String::from("swapper     0 [000] 1.0: 1 cpu-clock: \n");
            for f in frames {
                t.push_str(&format!("\tffffffff81000001 {f}+0x5 ([kernel.kallsyms])\n"));
            }
            t.push('\n');
            t
        };
        let cases: &[(&[&str], bool)] = &[
            (
                &[
                    "native_safe_halt",
                    "default_idle",
                    "arch_cpu_idle",
                    "do_idle",
                ],
                true,
            ),
            (
                &[
                    "pv_native_safe_halt",
                    "default_idle",
                    "default_idle_call",
                    "do_idle",
                ],
                true,
            ),
            (
                &[
                    "intel_idle",
                    "cpuidle_enter_state",
                    "cpuidle_enter",
                    "do_idle",
                ],
                true,
            ),
            (
                &[
                    "xen_hypercall_sched_op",
                    "default_idle",
                    "arch_cpu_idle",
                    "cpu_startup_entry",
                ],
                true,
            ),
            (
                &[
                    "finish_task_switch",
                    "__schedule",
                    "schedule_idle",
                    "do_idle",
                ],
                false,
            ),
            (&["tick_nohz_idle_enter", "do_idle"], false),
            (&["tick_nohz_idle_exit", "do_idle"], false),
            (&["call_cpuidle", "do_idle"], false),
            (&["haltpoll_reflect", "haltpoll_select", "do_idle"], false),
            (
                &[
                    "poll_idle",
                    "cpuidle_enter_state",
                    "cpuidle_enter",
                    "do_idle",
                ],
                false,
            ),
            (
                &[
                    "scheduler_ipi",
                    "smp_reschedule_interrupt",
                    "reschedule_interrupt",
                    "cpu_idle",
                ],
                false,
            ),
            (
                &[
                    "generic_smp_call_function_single_interrupt",
                    "call_function_single_interrupt",
                    "cpu_idle",
                ],
                false,
            ),
            (&["xen_hypercall_sched_op", "xen_yield"], false),
        ];
        for (frames, idle) in cases {
            let p = fold_str(&sample(frames));
            assert_eq!(p.samples, 1, "{frames:?}");
            assert_eq!(p.idle_samples == 1, *idle, "{frames:?}");
        }
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
        // Each sample keeps its one frame, also behind an event with a modifier
        // suffix (`cycles:u:`, `cpu-clock:pppH:`).
        let leaves: Vec<&str> = p
            .stacks
            .iter()
            .map(|s| p.names[s.frames[0] as usize].as_str())
            .collect();
        assert!(leaves.contains(&"_dl_start"), "{leaves:?}");
        assert!(
            p.stacks.iter().all(|s| s.frames.len() == 2),
            "{:?}",
            p.stacks
        );
        let p = fold_str("iperf3 1234 [001] 12345.678901:   10101010 cpu-clock:pppH:  ffffffff81234567 tcp_ack+0x17 ([kernel.kallsyms])\n");
        assert_eq!(p.stacks.len(), 1);
        assert_eq!(p.names[p.stacks[0].frames[0] as usize], "tcp_ack");
        assert_eq!(p.kinds[p.stacks[0].frames[0] as usize], FrameKind::Kernel);
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let text = "inline-counter 26037  8801.194312:     250000 cpu-clock:uhH:\n\t          THIS_IS_A_WEIRD_LINE\n\nnot a header at all\n";
        let p = fold_str(text);
        assert_eq!((p.samples, p.dropped_samples), (0, 1));
        assert_eq!(
            p.event, "cpu-clock",
            "a dropped sample still names its event"
        );
        assert_eq!(p.malformed_lines, 2, "{:?}", p.warnings);
        assert!(p.warnings[0].starts_with("<memory>:2:"), "{:?}", p.warnings);
    }

    /// The text of a corpus file copied into tests/fixtures/perf-corpus.
    macro_rules! corpus {
        ($path:literal) => {
            include_str!(concat!("../../../../tests/fixtures/perf-corpus/", $path))
        };
    }

    /// Issue 14: a sample whose stack is empty or unreadable became a busy stack of
    /// the process name alone; inferno drops it, and so does kdelta now, counting it.
    #[test]
    fn samples_without_a_readable_frame_are_dropped_and_counted() {
        for file in [
            corpus!("inferno-collapse-perf/empty-line.txt"),
            corpus!("inferno-collapse-perf/weird-stack-line.txt"),
        ] {
            let p = fold_str(file);
            assert_eq!((p.samples, p.dropped_samples), (1, 1), "{:?}", p.stacks);
            assert!(
                p.stacks.iter().all(|s| s.frames.len() >= 2),
                "{:?}",
                p.stacks
            );
            assert_eq!(p.malformed_lines, 1, "{:?}", p.warnings);
        }
    }

    /// Issue 14: `[unknown]` at a kernel address is kernel code, not user code.
    #[test]
    fn unknown_frames_at_kernel_addresses_are_kernel() {
        let p = fold_str(corpus!("inferno-collapse-perf/single-line-stacks.txt"));
        let unknown = p
            .stacks
            .iter()
            .map(|s| s.frames[0] as usize)
            .find(|&f| p.names[f] == "[unknown]")
            .expect("the [unknown] sample");
        assert_eq!(p.kinds[unknown], FrameKind::Kernel);
    }

    /// Module frames perf prints as `([nf_tables])` (no module file found) or with
    /// the module's path, compressed or not, are kernel code.
    #[test]
    fn module_frames_are_kernel() {
        let text = "iperf3 100 [000] 1.000000: 10101010 cpu-clock:pppH: \n\tffffffffc0a1b2c3 nft_do_chain+0x74 ([nf_tables])\n\tffffffffc0a1b000 u32_classify+0x10 (/lib/modules/6.12/kernel/net/sched/cls_u32.ko.xz)\n\tffffffff81000000 tcp_v4_rcv+0x1 ([kernel.kallsyms])\n\t    7f0000001000 __libc_recv+0x10 ([vdso])\n\n";
        let p = fold_str(text);
        let kind = |n: &str| p.kinds[p.names.iter().position(|x| x == n).expect(n)];
        assert_eq!(kind("nft_do_chain"), FrameKind::Kernel);
        assert_eq!(kind("u32_classify"), FrameKind::Kernel);
        assert_eq!(kind("__libc_recv"), FrameKind::User);
    }

    /// Issue 17: each function keeps the module its frames name, whatever it is
    /// called; a name met in two places belongs to neither for sure.
    #[test]
    fn module_membership_is_kept_per_function() {
        let sample = |frames: &[(&str, &str)]| {
            let mut t = String::from("iperf3 100 [000] 1.000000: 1 cpu-clock: \n");
            for (sym, dso) in frames {
                let addr = if dso.contains("kallsyms") {
                    "ffffffff81000000"
                } else {
                    "ffffffffc0a1b000"
                };
                t.push_str(&format!("\t{addr} {sym}+0x10 ({dso})\n"));
            }
            t.push('\n');
            t
        };
        let netem = "/lib/modules/6.1.0-27-amd64/kernel/net/sched/sch_netem.ko";
        let mut text = String::new();
        for _ in 0..20 {
            text.push_str(&sample(&[
                ("_raw_spin_lock", "[kernel.kallsyms]"),
                ("netem_enqueue", netem),
                ("u32_classify", "[cls_u32]"),
                ("[unknown]", "[snd-hda-intel]"),
                ("dup_name", "[mod_a]"),
                ("tcp_v4_rcv", "[kernel.kallsyms]"),
            ]));
            text.push_str(&sample(&[
                ("dup_name", "[mod_b]"),
                ("both", "[kernel.kallsyms]"),
                ("__vsyscall", "[vsyscall]"),
            ]));
            text.push_str(&sample(&[("both", "[mod_a]")]));
        }
        let one = fold_str(&text);
        let many = fold_reader(
            text.as_bytes(),
            "x",
            &FoldOptions {
                threads: 3,
                block_size: 64,
                max_warnings: 5,
            },
        )
        .unwrap();
        for p in [&one, &many] {
            let module = |n: &str| {
                let id = p.names.iter().position(|x| x == n).expect(n);
                p.module_of(id as u32)
            };
            assert_eq!(module("netem_enqueue"), Some("sch_netem"));
            assert_eq!(module("u32_classify"), Some("cls_u32"));
            assert_eq!(module("[snd-hda-intel]"), Some("snd_hda_intel"));
            assert_eq!(module("_raw_spin_lock"), None);
            assert_eq!(module("dup_name"), None, "two modules");
            assert_eq!(module("both"), None, "vmlinux and a module");
            assert_eq!(module("__vsyscall"), None);
            assert_eq!(
                p.modules,
                ["cls_u32", "mod_a", "mod_b", "sch_netem", "snd_hda_intel"]
            );
        }
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
