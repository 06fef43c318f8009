//! Kernel functions renamed between versions, compared as one function: an upgrade
//! from 6.1 to 6.12 renames `__do_softirq` to `handle_softirqs` and gives the
//! allocators `_noprof` names (memory allocation profiling, 6.10), and a function
//! table that lists both as "gone" and "new" hides the change the reader wants.
//!
//! Only names each side has alone are joined, and the candidate's entry takes the
//! baseline's name, so nothing is joined within one kernel.

use super::functions::SideCounts;

/// (older name, newer name), from the kernel's history.
const RENAMES: &[(&str, &str)] = &[
    // 6.8: softirq processing split out of __do_softirq.
    ("__do_softirq", "handle_softirqs"),
    // 6.4: the x86 user-copy string variants folded into one.
    ("copy_user_enhanced_fast_string", "rep_movs_alternative"),
    ("copy_user_generic_string", "rep_movs_alternative"),
    ("copy_user_generic_unrolled", "rep_movs_alternative"),
    // 5.19: TCP's skb allocation moved out of the generic stream code.
    ("sk_stream_alloc_skb", "tcp_stream_alloc_skb"),
    // 6.10: kmalloc's tracepoint wrapper became the cache path.
    ("kmalloc_trace", "__kmalloc_cache_noprof"),
];

/// Joins renamed functions; returns (baseline name, candidate name) of each join.
pub fn align_renames(b: &SideCounts, c: &mut SideCounts) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = Vec::new();
    let alone = |here: &SideCounts, there: &SideCounts, f: &str| {
        here.functions.contains_key(f) && !there.functions.contains_key(f)
    };
    for (old, new) in RENAMES {
        if alone(b, c, old) && alone(c, b, new) {
            pairs.push((old.to_string(), new.to_string()));
        } else if alone(b, c, new) && alone(c, b, old) {
            pairs.push((new.to_string(), old.to_string()));
        }
    }
    // Allocation profiling's `_noprof` names, either way.
    let noprof: std::collections::BTreeSet<&String> = b
        .functions
        .keys()
        .chain(c.functions.keys())
        .filter(|f| f.ends_with("_noprof"))
        .collect();
    for f in noprof {
        let base = f.strip_suffix("_noprof").unwrap_or(f);
        let (bn, cn) = if alone(b, c, base) && alone(c, b, f) {
            (base, f.as_str())
        } else if alone(b, c, f) && alone(c, b, base) {
            (f.as_str(), base)
        } else {
            continue;
        };
        if !pairs.iter().any(|p| p.1 == cn) {
            pairs.push((bn.to_string(), cn.to_string()));
        }
    }
    for (bn, cn) in &pairs {
        if let Some(v) = c.functions.remove(cn) {
            c.functions.insert(bn.clone(), v);
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::functions::FnCounts;

    fn side(names: &[&str]) -> SideCounts {
        SideCounts {
            functions: names
                .iter()
                .map(|n| (n.to_string(), FnCounts::default()))
                .collect(),
            ..SideCounts::default()
        }
    }

    #[test]
    fn renamed_functions_are_joined_under_the_baseline_name() {
        let b = side(&["__do_softirq", "kmem_cache_alloc", "tcp_ack"]);
        let mut c = side(&["handle_softirqs", "kmem_cache_alloc_noprof", "tcp_ack"]);
        let pairs = align_renames(&b, &mut c);
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert!(c.functions.contains_key("__do_softirq"));
        assert!(c.functions.contains_key("kmem_cache_alloc"));
        assert!(!c.functions.contains_key("handle_softirqs"));
    }

    #[test]
    fn a_kernel_with_both_names_is_left_alone() {
        let b = side(&["__do_softirq", "handle_softirqs"]);
        let mut c = side(&["handle_softirqs"]);
        assert!(align_renames(&b, &mut c).is_empty());
    }
}
