//! Errors of the DAG spec: every problem found in a file, each naming its
//! place (file, DAG, task, field) and saying how to fix it.

use std::fmt;

/// One problem in a DAG file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The file as the caller named it.
    pub file: String,
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
    /// The offending field, as a path (`retries`, `resources.memory`, `params.epochs.default`).
    pub field: Option<String>,
    /// What is wrong, naming the field and the value.
    pub message: String,
    /// How to fix it, when there is something specific to say.
    pub hint: Option<String>,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(task) = &self.task_id {
            write!(f, " in task `{task}`")?;
        }
        match (&self.task_id, &self.dag_id) {
            (Some(_), Some(dag)) => write!(f, " of DAG `{dag}`")?,
            (None, Some(dag)) => write!(f, " in DAG `{dag}`")?,
            _ => {}
        }
        write!(f, " (file {})", self.file)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in one file (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl SpecErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.0.iter()
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [] => f.write_str("no problems"),
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} problems:", many.len())?;
                for e in many {
                    write!(f, "\n  - {e}")?;
                }
                Ok(())
            }
        }
    }
}

impl IntoIterator for SpecErrors {
    type Item = SpecError;
    type IntoIter = std::vec::IntoIter<SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// Where the reader currently is, so that each problem can be placed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Place {
    pub dag_id: Option<String>,
    pub task_id: Option<String>,
}

impl Place {
    pub(crate) fn dag(dag_id: &str) -> Place {
        Place {
            dag_id: Some(dag_id.to_owned()),
            task_id: None,
        }
    }
    pub(crate) fn task(&self, task_id: &str) -> Place {
        Place {
            dag_id: self.dag_id.clone(),
            task_id: Some(task_id.to_owned()),
        }
    }
}

/// Collects problems while reading or validating one file.
#[derive(Debug)]
pub(crate) struct Diag {
    pub file: String,
    pub errors: Vec<SpecError>,
}

impl Diag {
    pub(crate) fn new(file: &str) -> Diag {
        Diag {
            file: file.to_owned(),
            errors: Vec::new(),
        }
    }

    /// Records a problem at `place` in `field`.
    pub(crate) fn err(
        &mut self,
        place: &Place,
        field: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.errors.push(SpecError {
            file: self.file.clone(),
            dag_id: place.dag_id.clone(),
            task_id: place.task_id.clone(),
            field: field.map(str::to_owned),
            message: message.into(),
            hint,
        });
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = match word.chars().count() {
        0..=3 => 1,
        4..=7 => 2,
        _ => 3,
    };
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?" for a likely typo of one of `candidates`.
pub(crate) fn did_you_mean(word: &str, candidates: &[&str]) -> Option<String> {
    suggest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let v = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            cur.push(v);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `a`, `b` or `c` — a list of names for messages.
pub(crate) fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest("retires", &["retries", "retry_delay"]),
            Some("retries")
        );
        assert_eq!(suggest("zzz", &["retries"]), None);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }

    #[test]
    fn display_reads_as_a_sentence() {
        let e = SpecError {
            file: "x.yaml".into(),
            dag_id: Some("ml".into()),
            task_id: Some("train".into()),
            field: Some("retires".into()),
            message: "unknown task field `retires`".into(),
            hint: Some("did you mean `retries`?".into()),
        };
        assert_eq!(
            e.to_string(),
            "unknown task field `retires` in task `train` of DAG `ml` (file x.yaml); did you mean `retries`?"
        );
    }
}
