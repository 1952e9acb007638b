//! Renders remembered between cycles: a template whose inputs did not change is not
//! rendered again.
//!
//! An unchanged cycle fetches nothing new (change tokens), so a templated spec would render
//! exactly what it rendered last cycle. Each (spec, template key) keeps its last output with
//! a SHA-256 digest of what went in (the template and every key and value of its data); the
//! next render with the same digest and the same parsed template gives that output back.
//! Templates that read the clock or randomness ([`Template::is_deterministic`]) always
//! render. Entries hold the output as a [`SecretValue`] (zeroized when dropped); a full
//! cycle drops the entries of specs it did not render, and the map never holds more than
//! [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::template::{Template, TemplateContext};
use crate::value::SecretValue;

/// Most remembered renders; past it the memo starts over.
pub(crate) const MAX_ENTRIES: usize = 200_000;

struct Entry {
    digest: [u8; 32],
    /// Kept so the template's address (part of the digest) is not reused while the entry
    /// lives.
    template: Arc<Template>,
    out: SecretValue,
    /// The generation that last used it.
    seen: u64,
}

/// The remembered renders of one engine.
#[derive(Default)]
pub(crate) struct RenderMemo {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<u64, Entry>,
    generation: u64,
}

impl std::fmt::Debug for RenderMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.inner.lock().map(|i| i.entries.len()).unwrap_or(0);
        write!(f, "RenderMemo({n} entries)")
    }
}

/// What went into a render: the parsed template (by address) and the data.
fn digest(template: &Arc<Template>, ctx: &TemplateContext) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update((Arc::as_ptr(template) as usize).to_le_bytes());
    h.update((ctx.len() as u64).to_le_bytes());
    for (k, v) in ctx {
        h.update((k.len() as u64).to_le_bytes());
        h.update(k.as_bytes());
        let v = v.expose();
        h.update((v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.finalize().into()
}

/// Where a (spec, template key) keeps its render.
fn slot(namespace: &str, name: &str, key: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (namespace, name, key).hash(&mut h);
    h.finish()
}

impl RenderMemo {
    /// `template` rendered over `ctx` for the template key `key` of spec
    /// `namespace/name`: the remembered output when nothing that goes in changed.
    pub(crate) fn render(
        &self,
        (namespace, name, key): (&str, &str, &str),
        template: &Arc<Template>,
        ctx: &TemplateContext,
    ) -> Result<SecretValue, String> {
        if !template.is_deterministic() {
            return template.render(ctx);
        }
        let digest = digest(template, ctx);
        let slot = slot(namespace, name, key);
        {
            let mut inner = self.inner.lock().expect("render memo");
            let generation = inner.generation;
            if let Some(e) = inner.entries.get_mut(&slot)
                && e.digest == digest
                && Arc::ptr_eq(&e.template, template)
            {
                e.seen = generation;
                return Ok(e.out.clone());
            }
        }
        let out = template.render(ctx)?;
        let mut inner = self.inner.lock().expect("render memo");
        if inner.entries.len() >= MAX_ENTRIES {
            inner.entries.clear();
        }
        let seen = inner.generation;
        inner.entries.insert(
            slot,
            Entry {
                digest,
                template: template.clone(),
                out: out.clone(),
                seen,
            },
        );
        Ok(out)
    }

    /// After a cycle over every spec: forgets the renders it did not use.
    pub(crate) fn end_full_cycle(&self) {
        let mut inner = self.inner.lock().expect("render memo");
        let generation = inner.generation;
        inner.entries.retain(|_, e| e.seen == generation);
        inner.generation += 1;
    }

    /// Forgets every render.
    pub(crate) fn clear(&self) {
        self.inner.lock().expect("render memo").entries.clear();
    }

    /// How many renders are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().expect("render memo").entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> TemplateContext {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), SecretValue::from(*v)))
            .collect()
    }

    fn text(v: SecretValue) -> String {
        String::from_utf8(v.expose().to_vec()).unwrap()
    }

    #[test]
    fn same_inputs_same_output_new_inputs_render_again() {
        let memo = RenderMemo::default();
        let t = Arc::new(Template::parse("{{ .a | upper }}-{{ .b }}").unwrap());
        let at = ("ns", "es", "k");
        assert_eq!(
            text(memo.render(at, &t, &ctx(&[("a", "x"), ("b", "1")])).unwrap()),
            "X-1"
        );
        assert_eq!(
            text(memo.render(at, &t, &ctx(&[("a", "x"), ("b", "1")])).unwrap()),
            "X-1"
        );
        // A changed value, a new key, a moved byte between key and value: rendered anew.
        assert_eq!(
            text(memo.render(at, &t, &ctx(&[("a", "y"), ("b", "1")])).unwrap()),
            "Y-1"
        );
        assert_eq!(
            text(memo.render(at, &t, &ctx(&[("a", "y"), ("b", "1"), ("c", "")])).unwrap()),
            "Y-1"
        );
        let t2 = Arc::new(Template::parse("{{ .a }}").unwrap());
        assert_eq!(
            text(memo.render(at, &t2, &ctx(&[("a", "y"), ("b", "1")])).unwrap()),
            "y"
        );
        assert_eq!(memo.len(), 1, "one slot per spec and key");
    }

    #[test]
    fn clock_and_randomness_always_render() {
        let memo = RenderMemo::default();
        let t = Arc::new(Template::parse("{{ randAlphaNum 32 }}").unwrap());
        assert!(!t.is_deterministic());
        let at = ("ns", "es", "k");
        let a = text(memo.render(at, &t, &ctx(&[])).unwrap());
        let b = text(memo.render(at, &t, &ctx(&[])).unwrap());
        assert_ne!(a, b, "a random template is not remembered");
        assert_eq!(memo.len(), 0);
        for src in [
            "{{ now }}",
            "{{ bcrypt .a }}",
            "{{ uuidv4 }}",
            "{{ define \"x\" }}{{ now }}{{ end }}",
        ] {
            assert!(!Template::parse(src).unwrap().is_deterministic(), "{src}");
        }
        assert!(Template::parse("{{ .a | sha256sum }}").unwrap().is_deterministic());
    }

    #[test]
    fn a_full_cycle_forgets_what_it_did_not_render() {
        let memo = RenderMemo::default();
        let t = Arc::new(Template::parse("{{ .a }}").unwrap());
        let c = ctx(&[("a", "v")]);
        memo.render(("ns", "one", "k"), &t, &c).unwrap();
        memo.render(("ns", "two", "k"), &t, &c).unwrap();
        memo.end_full_cycle();
        memo.render(("ns", "one", "k"), &t, &c).unwrap();
        memo.end_full_cycle();
        assert_eq!(memo.len(), 1, "`two` was not rendered in the last full cycle");
    }
}
