//! Patient references as keyed pseudonyms. With `FUNDUS_PSEUDONYM_KEY` set,
//! the `patient_ref` a phone sends is stored as `ps1:` and the first 128 bits
//! of HMAC-SHA256 under the site's own key (itself an HMAC of the site's name
//! under the secret), so the database alone does not say who anyone is, the
//! same person at the same site always gets the same pseudonym (the reading
//! page's history still works), and one site's pseudonyms say nothing about
//! another's. A site finds its own people with `fundus admin pseudonym`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub use store::Secret;

/// The stored form's prefix; the number is the scheme's version.
pub const PREFIX: &str = "ps1:";
/// Shortest secret accepted (bytes).
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct PseudonymArgs {
    /// Secret (at least 32 bytes; e.g. `openssl rand -hex 32`) from which each
    /// site's key for patient references is derived. When set, patient
    /// references are stored as keyed pseudonyms; when not, as sent.
    #[arg(long = "pseudonym-key", env = "FUNDUS_PSEUDONYM_KEY")]
    pub key: Option<Secret>,
}

impl PseudonymArgs {
    pub fn validate(&self) -> Result<(), String> {
        match &self.key {
            Some(k) if k.expose().len() < MIN_KEY_BYTES => {
                Err(format!("FUNDUS_PSEUDONYM_KEY is {} bytes; it must be at least {MIN_KEY_BYTES}", k.expose().len()))
            }
            _ => Ok(()),
        }
    }

    /// What is stored for `patient_ref` at `site`.
    pub fn stored(&self, site: &str, patient_ref: &str) -> String {
        match &self.key {
            None => patient_ref.to_owned(),
            Some(k) => pseudonym(k.expose().as_bytes(), site, patient_ref),
        }
    }

    /// Every form `patient_ref` may have been stored in at `site`: as sent
    /// (before a key was configured) and as a pseudonym.
    pub fn candidates(&self, site: &str, patient_ref: &str) -> Vec<String> {
        let mut all = vec![patient_ref.to_owned()];
        if self.key.is_some() {
            all.push(self.stored(site, patient_ref));
        }
        all
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    parts.iter().for_each(|p| m.update(p));
    m.finalize().into_bytes().into()
}

pub fn pseudonym(secret: &[u8], site: &str, patient_ref: &str) -> String {
    let site_key = mac(secret, &[b"fundus/site/", site.as_bytes()]);
    let p = mac(&site_key, &[patient_ref.trim().as_bytes()]);
    format!("{PREFIX}{}", hex::encode(&p[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_per_site_and_differ_across_sites_and_keys() {
        let k = b"0123456789abcdef0123456789abcdef";
        let a = pseudonym(k, "clinic-a", "P-0001");
        assert_eq!(a, pseudonym(k, "clinic-a", " P-0001 "));
        assert!(a.starts_with(PREFIX) && a.len() == PREFIX.len() + 32, "{a}");
        assert_ne!(a, pseudonym(k, "clinic-b", "P-0001"));
        assert_ne!(a, pseudonym(k, "clinic-a", "P-0002"));
        assert_ne!(a, pseudonym(b"another secret of thirty-two bytes", "clinic-a", "P-0001"));
        // RFC 4231 test case 2 pins the HMAC itself.
        assert_eq!(hex::encode(mac(b"Jefe", &[b"what do ya want ", b"for nothing?"])), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn short_keys_are_refused_and_no_key_stores_as_sent() {
        let short = PseudonymArgs { key: Some("short".parse().expect("secret")) };
        assert!(short.validate().expect_err("refused").contains("at least 32"));
        let none = PseudonymArgs::default();
        assert_eq!(none.stored("s", "P-1"), "P-1");
        assert_eq!(none.candidates("s", "P-1"), vec!["P-1".to_owned()]);
    }
}
