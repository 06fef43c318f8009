//! Charging samples to causes: each busy sample goes once to the cause of the frame
//! nearest the leaf that matches one (context rules first), so generic helpers are
//! charged to the specific caller above them and nothing is counted twice.

use std::collections::BTreeMap;

use regex::Regex;

use super::cause::Cause;
use crate::analyze::fold::{FrameKind, Profile};

/// Which cause, if any, a frame at `pos` of a stack (leaf first) belongs to.
struct Matcher<'a> {
    /// Per frame id: the first cause whose plain symbols match.
    plain: Vec<Option<u16>>,
    /// Per frame id: context rules whose symbol matches (cause, callers).
    ctx: Vec<Vec<(u16, &'a Regex)>>,
}

impl<'a> Matcher<'a> {
    fn new(causes: &'a [Cause], p: &Profile) -> Self {
        let mut plain = Vec::with_capacity(p.names.len());
        let mut ctx = Vec::with_capacity(p.names.len());
        for (id, name) in p.names.iter().enumerate() {
            if p.kinds[id] == FrameKind::Comm {
                plain.push(None);
                ctx.push(Vec::new());
                continue;
            }
            let module = p.module_of(id as u32);
            plain.push(
                causes
                    .iter()
                    .position(|c| c.matches_frame(name, module))
                    .map(|i| i as u16),
            );
            let mut rules = Vec::new();
            for (ci, c) in causes.iter().enumerate() {
                for (sym, callers) in &c.context {
                    if sym.is_match(name) {
                        rules.push((ci as u16, callers));
                    }
                }
            }
            ctx.push(rules);
        }
        Matcher { plain, ctx }
    }

    /// Returns (cause index, frame position) for a stack, leaf first.
    fn charge(&self, frames: &[u32], names: &[String]) -> Option<(usize, usize)> {
        for (pos, &f) in frames.iter().enumerate() {
            let fi = f as usize;
            // Context rules first: they are the more specific statement.
            for (ci, callers) in &self.ctx[fi] {
                let upto = (pos + 5).min(frames.len());
                if frames[pos + 1..upto]
                    .iter()
                    .any(|&g| callers.is_match(&names[g as usize]))
                {
                    return Some((*ci as usize, pos));
                }
            }
            if let Some(ci) = self.plain[fi] {
                return Some((ci as usize, pos));
            }
        }
        None
    }
}

/// Charged weight (period or samples, as [`Profile::weight`]) of one side.
#[derive(Default)]
pub(crate) struct Charged {
    pub per_cause: Vec<u64>,
    /// (cause, matched function) → samples.
    pub per_symbol: BTreeMap<(usize, String), u64>,
    /// (cause) → top stacks (count, frames root first).
    /// Per cause: (samples, frames root first, index of the charged frame).
    pub stacks: Vec<Vec<(u64, Vec<String>, usize)>>,
    /// Leaf self counts of samples no cause took.
    pub uncharged_self: BTreeMap<String, u64>,
}

/// A leaf's name for the unexplained list: `[unknown]` is every symbol-less frame
/// of every process and of the kernel; split at least into kernel and user code.
fn leaf_name(p: &Profile, f: u32) -> String {
    let name = &p.names[f as usize];
    match (name.as_str(), p.kinds[f as usize]) {
        ("[unknown]", FrameKind::Kernel) => "[unknown kernel]".to_string(),
        ("[unknown]", _) => "[unknown user]".to_string(),
        _ => name.clone(),
    }
}

pub(crate) fn charge_side(p: &Profile, causes: &[Cause]) -> Charged {
    let m = Matcher::new(causes, p);
    let mut ch = Charged {
        per_cause: vec![0; causes.len()],
        stacks: vec![Vec::new(); causes.len()],
        ..Default::default()
    };
    for s in p.stacks.iter().filter(|s| !s.idle) {
        // Weighted as the function shares are (period or samples).
        let w = p.weight(s);
        let frames = &s.frames[..s.frames.len().saturating_sub(1)];
        match m.charge(frames, &p.names) {
            Some((ci, pos)) => {
                ch.per_cause[ci] += w;
                *ch.per_symbol
                    .entry((ci, p.names[frames[pos] as usize].clone()))
                    .or_default() += w;
                let list = &mut ch.stacks[ci];
                // Stacks come sorted by count: the first few are the hottest.
                if list.len() < 64 {
                    let names: Vec<String> = s
                        .frames
                        .iter()
                        .rev()
                        .map(|&f| p.names[f as usize].clone())
                        .collect();
                    // `pos` counts from the leaf; the names run from the root.
                    let charged = s.frames.len() - 1 - pos;
                    list.push((w, names, charged));
                }
            }
            None => {
                let leaf = frames
                    .first()
                    .map_or_else(|| "[no stack]".to_string(), |&f| leaf_name(p, f));
                *ch.uncharged_self.entry(leaf).or_default() += w;
            }
        }
    }
    ch
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::fold::fold_str;

    /// Issue 14: all `[unknown]` leaves merged into one "function", user code even at
    /// kernel addresses.
    #[test]
    fn unknown_leaves_are_kernel_or_user() {
        let p = fold_str(
            "a 1 [000] 1.0: 1 cpu-clock: \n\tffffffff9b201293 [unknown] ([unknown])\n\n\
             a 1 [000] 1.1: 1 cpu-clock: \n\t7f0000001000 [unknown] ([unknown])\n\n",
        );
        let ch = charge_side(&p, &[]);
        let keys: Vec<&str> = ch.uncharged_self.keys().map(String::as_str).collect();
        assert_eq!(keys, ["[unknown kernel]", "[unknown user]"]);
    }
}
