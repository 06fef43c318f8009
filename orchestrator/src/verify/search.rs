//! The search of `kdelta bisect`, without any host: given the delta's items, the
//! suspects attribution ranked, and the outcomes of the steps measured so far, the
//! next set to revert, or the answer.
//!
//! The search is replayed from the start on every call, answering from the steps
//! already measured, and stops at the first set it has no outcome for. So a
//! bisection is resumable by construction: the steps on disk are its whole state.
//!
//! Each step reverts a set of items on the candidate and measures it against the
//! candidate as it was (what `kdelta verify` does for one item):
//! 1. the top suspects are tried alone first — attribution is usually right, and a
//!    confirmed suspect ends the search in one step;
//! 2. otherwise the set is halved: a half that recovers the whole change holds the
//!    cause; a half that recovers nothing leaves it to the other half (inferred, not
//!    measured: the final check below catches an interaction); a half that recovers
//!    a part holds one cause and the other half another, and both are searched;
//! 3. every culprit found by halving is verified alone with fresh pairs, unless that
//!    very set was already measured.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What reverting a set did, from the verify finding of its step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Recovers the change: the cause is in the set.
    All,
    /// Recovers a significant part, and a significant part remains.
    Part,
    /// Recovers nothing beyond the limit (also: Kconfig put every option back).
    Nothing,
    /// The step's pairs did not decide.
    Unknown,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Revert this set (sorted) and measure it.
    Try(Vec<String>),
    /// The search is over: the items that reproduce the change, each verified alone
    /// (`All`: the whole change; `Part`: a part of it).
    Found(Vec<(String, Outcome)>),
    /// It cannot go on: why, and what would help.
    Stuck(String),
}

/// At most this many suspects are tried alone before halving.
pub const SUSPECTS_TRIED: usize = 3;

/// Steps measured so far: the sorted set reverted → its outcome.
pub type Steps = BTreeMap<Vec<String>, Outcome>;

enum Halt {
    Need(Vec<String>),
    Stuck(String),
}

fn ask(steps: &Steps, set: &[String]) -> Result<Outcome, Halt> {
    let mut key = set.to_vec();
    key.sort();
    match steps.get(&key) {
        Some(o) => Ok(*o),
        None => Err(Halt::Need(key)),
    }
}

/// The next step of the bisection of `items` (in the order halving should cut
/// them: related options next to each other), trying `suspects` alone first.
pub fn next(items: &[String], suspects: &[String], steps: &Steps) -> Next {
    match search(items, suspects, steps) {
        Ok(found) => Next::Found(found),
        Err(Halt::Need(set)) => Next::Try(set),
        Err(Halt::Stuck(why)) => Next::Stuck(why),
    }
}

fn search(
    items: &[String],
    suspects: &[String],
    steps: &Steps,
) -> Result<Vec<(String, Outcome)>, Halt> {
    if items.is_empty() {
        return Err(Halt::Stuck("the delta has no item to bisect".into()));
    }
    for s in suspects
        .iter()
        .filter(|s| items.contains(s))
        .take(SUSPECTS_TRIED)
    {
        if ask(steps, std::slice::from_ref(s))? == Outcome::All {
            return Ok(vec![(s.clone(), Outcome::All)]);
        }
    }
    let mut culprits = Vec::new();
    halve(items, steps, &mut culprits)?;
    // Verify each culprit alone: halving inferred some halves without measuring.
    let mut found = Vec::new();
    for c in culprits {
        match ask(steps, std::slice::from_ref(&c))? {
            o @ (Outcome::All | Outcome::Part) => found.push((c, o)),
            Outcome::Nothing => {}
            Outcome::Unknown => {
                return Err(Halt::Stuck(format!(
                    "{c} alone did not decide: run more pairs (--max-repeats) to confirm it"
                )))
            }
        }
    }
    if found.is_empty() {
        return Err(Halt::Stuck(
            "no single item reproduces the change alone: it takes several together (an interaction), or it is in the run's noise".into(),
        ));
    }
    Ok(found)
}

/// `set` is known (or inferred) to hold a cause: narrow it down to single items.
fn halve(set: &[String], steps: &Steps, out: &mut Vec<String>) -> Result<(), Halt> {
    if let [one] = set {
        out.push(one.clone());
        return Ok(());
    }
    let (a, b) = set.split_at(set.len() / 2);
    match ask(steps, a)? {
        Outcome::All => halve(a, steps, out),
        Outcome::Nothing => halve(b, steps, out),
        Outcome::Part => {
            halve(a, steps, out)?;
            halve(b, steps, out)
        }
        Outcome::Unknown => Err(Halt::Stuck(format!(
            "reverting {} did not decide: run more pairs (--max-repeats)",
            a.join(", ")
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Drives the search with an oracle and returns the answer and the sets tried.
    fn drive(
        items: &[&str],
        suspects: &[&str],
        oracle: impl Fn(&[String]) -> Outcome,
    ) -> (Next, Vec<Vec<String>>) {
        let (items, suspects) = (names(items), names(suspects));
        let mut steps = Steps::new();
        let mut tried = Vec::new();
        loop {
            match next(&items, &suspects, &steps) {
                Next::Try(set) => {
                    assert!(!steps.contains_key(&set), "asked twice for {set:?}");
                    assert!(tried.len() < 40, "runs away: {tried:?}");
                    steps.insert(set.clone(), oracle(&set));
                    tried.push(set);
                }
                done => return (done, tried),
            }
        }
    }

    const KASAN: [&str; 9] = [
        "CONFIG_CONSTRUCTORS",
        "CONFIG_GENERIC_CSUM",
        "CONFIG_KASAN",
        "CONFIG_KASAN_GENERIC",
        "CONFIG_KASAN_OUTLINE",
        "CONFIG_KASAN_SHADOW_OFFSET",
        "CONFIG_KASAN_STACK",
        "CONFIG_STACKDEPOT_ALWAYS_INIT",
        "CONFIG_VMAP_STACK",
    ];

    fn holds(set: &[String], item: &str) -> bool {
        set.iter().any(|s| s == item)
    }

    #[test]
    fn a_confirmed_suspect_ends_it_in_one_step() {
        let (n, tried) = drive(&KASAN, &["CONFIG_KASAN"], |s| {
            if holds(s, "CONFIG_KASAN") {
                Outcome::All
            } else {
                Outcome::Nothing
            }
        });
        assert_eq!(n, Next::Found(vec![("CONFIG_KASAN".into(), Outcome::All)]));
        assert_eq!(tried.len(), 1);
    }

    #[test]
    fn halving_finds_the_one_cause_of_nine_in_four_steps() {
        // No suspect (attribution was inconclusive): halving only.
        let (n, tried) = drive(&KASAN, &[], |s| {
            if holds(s, "CONFIG_KASAN") {
                Outcome::All
            } else {
                Outcome::Nothing
            }
        });
        assert_eq!(n, Next::Found(vec![("CONFIG_KASAN".into(), Outcome::All)]));
        assert!(tried.len() <= 4, "{tried:?}");
        assert_eq!(tried.last().unwrap(), &names(&["CONFIG_KASAN"]));
    }

    #[test]
    fn a_wrong_suspect_costs_one_step_then_halving() {
        let (n, tried) = drive(&KASAN, &["CONFIG_VMAP_STACK"], |s| {
            if holds(s, "CONFIG_KASAN_STACK") {
                Outcome::All
            } else {
                Outcome::Nothing
            }
        });
        assert_eq!(
            n,
            Next::Found(vec![("CONFIG_KASAN_STACK".into(), Outcome::All)])
        );
        assert_eq!(tried[0], names(&["CONFIG_VMAP_STACK"]));
        assert!(tried.len() <= 6, "{tried:?}");
    }

    #[test]
    fn two_causes_in_different_halves_are_both_found() {
        let causes = ["CONFIG_GENERIC_CSUM", "CONFIG_KASAN_STACK"];
        let (n, _) = drive(&KASAN, &[], |s| {
            match causes.iter().filter(|c| holds(s, c)).count() {
                2 => Outcome::All,
                1 => Outcome::Part,
                _ => Outcome::Nothing,
            }
        });
        assert_eq!(
            n,
            Next::Found(vec![
                ("CONFIG_GENERIC_CSUM".into(), Outcome::Part),
                ("CONFIG_KASAN_STACK".into(), Outcome::Part),
            ])
        );
    }

    #[test]
    fn an_interaction_is_not_blamed_on_one_item() {
        // The change needs both A and B reverted together: no single item does it.
        let (n, _) = drive(&["A", "B", "C", "D"], &[], |s| {
            if holds(s, "A") && holds(s, "B") {
                Outcome::All
            } else {
                Outcome::Nothing
            }
        });
        let Next::Stuck(why) = n else { panic!("{n:?}") };
        assert!(why.contains("interaction"), "{why}");
    }

    #[test]
    fn an_undecided_step_stops_with_what_to_do() {
        let (n, tried) = drive(&KASAN, &[], |_| Outcome::Unknown);
        assert_eq!(tried.len(), 1);
        let Next::Stuck(why) = n else { panic!("{n:?}") };
        assert!(why.contains("--max-repeats"), "{why}");
    }

    #[test]
    fn the_steps_are_the_state_so_a_resumed_search_asks_for_the_same_next_step() {
        let items = names(&KASAN);
        let mut steps = Steps::new();
        let Next::Try(first) = next(&items, &[], &steps) else {
            panic!()
        };
        steps.insert(first.clone(), Outcome::Nothing);
        let a = next(&items, &[], &steps);
        let b = next(&items, &[], &steps.clone());
        assert_eq!(a, b);
        assert_ne!(a, Next::Try(first));
    }
}
