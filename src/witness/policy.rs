//! The witness policy file, in the shape of C2SP tlog-policy (Sigsum's policy file):
//!
//! ```text
//! # comments and blank lines are ignored
//! log <vkey> [<url>]                  (optional: the logs accepted)
//! witness <name> <vkey> [<url>]       (a cosignature/v1 verifier key; the URL is the
//!                                      witness's submission prefix)
//! group <name> <k>|any|all <member>…  (members: witnesses or groups defined before)
//! quorum <name>|none                  (exactly one)
//! ```

use std::collections::{BTreeSet, HashMap};

use super::cosignature::CosignatureVerifier;
use crate::log::note::NoteVerifier;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("witness policy, line {line}: {reason}")]
pub struct PolicyError {
    pub line: usize,
    pub reason: String,
}

/// A witness the policy names.
#[derive(Debug, Clone)]
pub struct Witness {
    pub name: String,
    pub key: CosignatureVerifier,
    /// Its submission prefix (`…/add-checkpoint` is under it), if given.
    pub url: Option<String>,
}

#[derive(Debug, Clone)]
enum Rule {
    Witness(usize),
    Group {
        threshold: usize,
        members: Vec<String>,
    },
    None,
}

/// A parsed policy: the witnesses, and the rule that says which sets of them suffice.
#[derive(Debug, Clone)]
pub struct Policy {
    pub logs: Vec<NoteVerifier>,
    pub witnesses: Vec<Witness>,
    rules: HashMap<String, Rule>,
    quorum: String,
}

impl Policy {
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let mut logs = Vec::new();
        let mut witnesses: Vec<Witness> = Vec::new();
        let mut rules: HashMap<String, Rule> = HashMap::from([("none".to_owned(), Rule::None)]);
        let mut quorum = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| PolicyError { line, reason };
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            match words.as_slice() {
                [] => {}
                [w, ..] if w.starts_with('#') => {}
                ["log", key, rest @ ..] if rest.len() <= 1 => {
                    let v = NoteVerifier::parse(key).map_err(|e| err(e.to_string()))?;
                    if logs
                        .iter()
                        .any(|l: &NoteVerifier| l.public_key() == v.public_key())
                    {
                        return Err(err("the same log key twice".into()));
                    }
                    logs.push(v);
                }
                ["witness", name, key, rest @ ..] if rest.len() <= 1 => {
                    if rules.contains_key(*name) {
                        return Err(err(format!("the name {name} is defined twice")));
                    }
                    let key = CosignatureVerifier::parse(key).map_err(|e| err(e.to_string()))?;
                    if witnesses
                        .iter()
                        .any(|w| w.key.public_key() == key.public_key())
                    {
                        return Err(err("the same witness key twice".into()));
                    }
                    rules.insert(name.to_string(), Rule::Witness(witnesses.len()));
                    witnesses.push(Witness {
                        name: name.to_string(),
                        key,
                        url: rest.first().map(|u| u.trim_end_matches('/').to_owned()),
                    });
                }
                ["group", name, threshold, members @ ..] if !members.is_empty() => {
                    if rules.contains_key(*name) {
                        return Err(err(format!("the name {name} is defined twice")));
                    }
                    let mut seen = BTreeSet::new();
                    for m in members {
                        if *m == "none" || !rules.contains_key(*m) {
                            return Err(err(format!(
                                "{m} is not a witness or group defined above"
                            )));
                        }
                        if !seen.insert(*m) {
                            return Err(err(format!("{m} is a member twice")));
                        }
                    }
                    let threshold = match *threshold {
                        "any" => 1,
                        "all" => members.len(),
                        k => match k.parse::<usize>() {
                            Ok(k) if (1..=members.len()).contains(&k) => k,
                            _ => {
                                return Err(err(format!(
                                    "threshold must be any, all or 1..{}",
                                    members.len()
                                )))
                            }
                        },
                    };
                    rules.insert(
                        name.to_string(),
                        Rule::Group {
                            threshold,
                            members: members.iter().map(|m| m.to_string()).collect(),
                        },
                    );
                }
                ["quorum", name] => {
                    if quorum.is_some() {
                        return Err(err("more than one quorum line".into()));
                    }
                    if !rules.contains_key(*name) {
                        return Err(err(format!(
                            "{name} is not a witness or group defined above"
                        )));
                    }
                    quorum = Some(name.to_string());
                }
                _ => return Err(err(format!("cannot read {raw:?}"))),
            }
        }
        let quorum = quorum.ok_or(PolicyError {
            line: text.lines().count(),
            reason: "no quorum line".into(),
        })?;
        Ok(Self {
            logs,
            witnesses,
            rules,
            quorum,
        })
    }

    pub fn read(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the witness policy {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether the quorum is met by the witnesses (by index in `witnesses`) in `valid`.
    pub fn satisfied(&self, valid: &BTreeSet<usize>) -> bool {
        self.holds(&self.quorum, valid)
    }

    fn holds(&self, name: &str, valid: &BTreeSet<usize>) -> bool {
        match &self.rules[name] {
            Rule::None => true,
            Rule::Witness(i) => valid.contains(i),
            Rule::Group { threshold, members } => {
                members.iter().filter(|m| self.holds(m, valid)).count() >= *threshold
            }
        }
    }

    /// Whether the policy asks for any cosignature at all.
    pub fn requires_witnesses(&self) -> bool {
        !self.satisfied(&BTreeSet::new())
    }

    /// The witnesses (by index) whose valid cosignature is among `lines` for the
    /// checkpoint `text`, with each one's timestamp.
    pub fn cosigned_by(&self, text: &str, lines: &str) -> Vec<(usize, u64)> {
        self.witnesses
            .iter()
            .enumerate()
            .filter_map(|(i, w)| w.key.verify(text, lines).map(|t| (i, t)))
            .collect()
    }

    /// Check a signed checkpoint note against the policy: the witnesses that cosigned
    /// it, or why it does not meet the quorum.
    pub fn check(&self, note: &str) -> Result<Vec<String>, String> {
        let (text, lines) =
            super::cosignature::split_note(note).ok_or("the checkpoint is not a signed note")?;
        let by = self.cosigned_by(text, lines);
        let valid: BTreeSet<usize> = by.iter().map(|(i, _)| *i).collect();
        let names: Vec<String> = by
            .iter()
            .map(|(i, _)| self.witnesses[*i].name.clone())
            .collect();
        if self.satisfied(&valid) {
            Ok(names)
        } else {
            Err(format!(
                "the checkpoint does not meet the witness quorum `{}`: valid cosignatures by [{}] of [{}]",
                self.quorum,
                names.join(", "),
                self.witnesses.iter().map(|w| w.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn vkey(name: &str, seed: u8) -> String {
        super::super::cosignature::Cosigner::new(name, SigningKey::from_bytes(&[seed; 32]))
            .unwrap()
            .verifier()
            .to_string()
    }

    fn set(v: &[usize]) -> BTreeSet<usize> {
        v.iter().copied().collect()
    }

    #[test]
    fn groups_and_thresholds_decide_the_quorum() {
        let text = format!(
            "# two of X, any of Y\nwitness X1 {}\nwitness X2 {} http://x2.example/\nwitness X3 {}\ngroup X 2 X1 X2 X3\nwitness Y1 {}\ngroup Y any Y1\ngroup XY all X Y\nquorum XY\n",
            vkey("x1", 1), vkey("x2", 2), vkey("x3", 3), vkey("y1", 4)
        );
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.witnesses[1].url.as_deref(), Some("http://x2.example"));
        assert!(p.satisfied(&set(&[0, 1, 3])));
        assert!(p.satisfied(&set(&[0, 2, 3])));
        assert!(!p.satisfied(&set(&[0, 1, 2])));
        assert!(!p.satisfied(&set(&[0, 3])));
        assert!(p.requires_witnesses());
        assert!(!Policy::parse("quorum none\n").unwrap().requires_witnesses());
    }

    #[test]
    fn a_malformed_policy_names_its_line() {
        for (text, line) in [
            ("witness A notakey\nquorum A\n".to_owned(), 1),
            (format!("witness A {}\nquorum B\n", vkey("a", 1)), 2),
            (
                format!("witness A {}\ngroup G 3 A\nquorum G\n", vkey("a", 1)),
                2,
            ),
            (
                format!(
                    "witness A {}\nwitness B {}\nquorum A\n",
                    vkey("a", 1),
                    vkey("b", 1)
                ),
                2,
            ),
            (format!("witness A {}\n", vkey("a", 1)), 1),
        ] {
            assert_eq!(Policy::parse(&text).unwrap_err().line, line, "{text}");
        }
    }
}
