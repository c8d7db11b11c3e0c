//! Sealing invariants over generated secrets and bindings (docs/security-model.md): opening
//! what was sealed gives it back, and any flipped bit, or any other binding, is refused.

use airlock_host_api::credentials::vault::{DataKey, KvAad, SecretAad};
use proptest::prelude::*;

fn binding() -> impl Strategy<Value = (String, String, String, u32)> {
    ("[a-z0-9-]{1,12}", "[a-z0-9-]{1,12}", ".{0,16}", 0u32..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn sealing_then_opening_is_the_identity_and_a_flipped_bit_is_refused(
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        (tenant, installation, credential, key_version) in binding(),
        other in binding(),
        bit in any::<usize>(),
    ) {
        let key = DataKey::generate();
        let aad = SecretAad {
            tenant: &tenant,
            installation: &installation,
            credential: &credential,
            key_version,
        };
        let sealed = key.seal(&aad, &plaintext);
        let opened = key.open(&aad, &sealed).expect("opens");
        prop_assert_eq!(opened.as_slice(), plaintext.as_slice());

        let mut flipped = sealed.clone();
        let bits = (flipped.nonce.len() + flipped.ciphertext.len()) * 8;
        let bit = bit % bits;
        let (byte, mask) = (bit / 8, 1u8 << (bit % 8));
        match byte.checked_sub(flipped.nonce.len()) {
            None => flipped.nonce[byte] ^= mask,
            Some(at) => flipped.ciphertext[at] ^= mask,
        }
        prop_assert!(key.open(&aad, &flipped).is_err(), "bit {} flipped still opens", bit);

        let (tenant2, installation2, credential2, version2) = &other;
        let elsewhere = SecretAad {
            tenant: tenant2,
            installation: installation2,
            credential: credential2,
            key_version: *version2,
        };
        if (tenant2, installation2, credential2, version2)
            != (&tenant, &installation, &credential, &key_version)
        {
            prop_assert!(key.open(&elsewhere, &sealed).is_err(), "opens bound elsewhere");
        }
        let as_kv = KvAad {
            tenant: &tenant,
            installation: &installation,
            key: &credential,
            key_version,
        };
        prop_assert!(key.open(&as_kv, &sealed).is_err(), "a credential opens as a kv value");
        prop_assert!(DataKey::generate().open(&aad, &sealed).is_err(), "opens under another key");
    }
}
