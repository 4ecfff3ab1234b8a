//! Curve25519 keys and the preshared key, in the encodings the WireGuard tools use.
//!
//! Private keys are stored clamped, exactly as `wg genkey` prints them and as the kernel and
//! wireguard-go store what they are given, so `wg showconf` round-trips byte for byte. Base64 is
//! the 44-character padded form of `wg`; hex (lowercase on output, either case on input) is the
//! userspace API's form. Only the canonical base64 of 32 bytes is accepted (one `=`, no stray
//! bits), as `wg` accepts it.
//!
//! Both encodings run in constant time, as wireguard-tools' do: no branch or table lookup
//! depends on a key's bytes (`base64ct`, `base16ct`).
//!
//! Secret types zeroize on drop, compare in constant time, redact themselves in `Debug` and
//! have no `Display`: printing one takes an explicit `*_secret()` call that a reviewer can see.

use core::fmt;

use aws_lc_rs::agreement;

use base64ct::{Base64, Encoding as _};
use rand_core::{CryptoRng, RngCore};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// Length in bytes of every key.
pub const KEY_LEN: usize = 32;

/// Length of a key in base64: 43 characters and one `=`.
const BASE64_LEN: usize = 44;

/// Why a key string was rejected: exactly what is wrong, never the key itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyParseError {
    /// A character outside the base64 alphabet (which no key contains, so naming it reveals
    /// nothing).
    Character {
        /// The character.
        character: char,
        /// Its 1-based position in the trimmed text.
        position: usize,
    },
    /// Base64 of the wrong length.
    Length {
        /// How many characters the trimmed text has.
        characters: usize,
    },
    /// `=` somewhere other than the end.
    Padding,
    /// 44 characters of base64 that do not make 32 bytes.
    Bytes {
        /// How many bytes they decode to.
        decoded: usize,
    },
    /// The last character before `=` sets bits beyond the 32 bytes, which `wg` never prints.
    TrailingBits,
    /// Not 64 hexadecimal digits.
    Hex,
}

impl fmt::Display for KeyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHAPE: &str = "a key is 43 characters of base64 and one `=`, as `wg genkey` prints";
        match self {
            Self::Character { character, position } => write!(
                f,
                "character {position} (`{}`) is not base64: a key uses only A-Z, a-z, 0-9, `+`, \
                 `/` and a final `=`",
                character.escape_debug()
            ),
            Self::Length { characters } => {
                write!(f, "{characters} characters, expected {BASE64_LEN}: {SHAPE}")
            }
            Self::Padding => write!(f, "`=` in the middle: {SHAPE}"),
            Self::Bytes { decoded } => {
                write!(f, "decodes to {decoded} bytes instead of {KEY_LEN}: {SHAPE}")
            }
            Self::TrailingBits => f.write_str(
                "the character before the final `=` sets bits no 32-byte key has (was it \
                 mistyped?)",
            ),
            Self::Hex => f.write_str("a key is 64 hexadecimal digits"),
        }
    }
}

impl std::error::Error for KeyParseError {}

/// Decodes the 44-character base64 form, in constant time for a well-formed key: no branch or
/// table lookup depends on its bytes. Only text that is not a key is examined further, to say
/// what is wrong with it.
fn decode_base64(text: &str) -> Result<[u8; KEY_LEN], KeyParseError> {
    let text = text.trim();
    let mut key = [0u8; KEY_LEN];
    // `Base64` is the padded standard alphabet and refuses non-zero trailing bits, as `wg` does.
    if text.len() == BASE64_LEN
        && Base64::decode(text, &mut key).is_ok_and(|decoded| decoded.len() == KEY_LEN)
    {
        return Ok(key);
    }
    key.zeroize();
    Err(diagnose_base64(text))
}

/// What is wrong with `text`, which did not decode to a key.
fn diagnose_base64(text: &str) -> KeyParseError {
    let alphabet = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    if let Some((index, character)) = text.chars().enumerate().find(|(_, c)| !alphabet(*c)) {
        return KeyParseError::Character { character, position: index + 1 };
    }
    if text.len() != BASE64_LEN {
        return KeyParseError::Length { characters: text.len() };
    }
    let unpadded = text.trim_end_matches('=');
    if unpadded.contains('=') || text.len() - unpadded.len() > 2 {
        return KeyParseError::Padding;
    }
    // Each character carries 6 bits; a partial byte at the end is not a byte.
    let decoded = unpadded.len() * 6 / 8;
    if decoded != KEY_LEN {
        return KeyParseError::Bytes { decoded };
    }
    // 43 characters and one `=` that still did not decode: bits set past the 32nd byte.
    KeyParseError::TrailingBits
}

/// Decodes 64 hex digits of either case, in constant time.
fn decode_hex(text: &str) -> Result<[u8; KEY_LEN], KeyParseError> {
    let mut key = [0u8; KEY_LEN];
    // The length check matters: the decoder fills a prefix of `key` from shorter text.
    if text.len() == 2 * KEY_LEN && base16ct::mixed::decode(text, &mut key).is_ok() {
        return Ok(key);
    }
    key.zeroize();
    Err(KeyParseError::Hex)
}

/// Encodes in lowercase hex, in constant time.
fn encode_hex(bytes: &[u8; KEY_LEN]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// A Curve25519 public key: a peer's identity.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Parses the base64 form `wg pubkey` prints.
    ///
    /// # Errors
    /// A [`KeyParseError`] saying what is wrong unless the text is 44 characters of canonical
    /// base64 (leading and trailing whitespace aside).
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self)
    }

    /// Parses the hex form of the userspace API.
    ///
    /// # Errors
    /// [`KeyParseError::Hex`] unless the text is 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self)
    }

    /// The base64 form, as `wg` prints it.
    pub fn to_base64(&self) -> String {
        Base64::encode_string(&self.0)
    }

    /// The lowercase hex form of the userspace API.
    pub fn to_hex(&self) -> String {
        encode_hex(&self.0)
    }

    /// Constant-time equality, for comparisons whose timing could leak which key matched.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl core::str::FromStr for PublicKey {
    type Err = KeyParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_base64(s)
    }
}

/// A private key loaded for X25519, for keys used more than once (our static key, a
/// handshake's ephemeral key): loading computes the public key, a third of a Diffie-Hellman,
/// so it is done once per key rather than once per use.
pub(crate) struct X25519Key {
    key: agreement::PrivateKey,
    public: PublicKey,
}

/// Why these AWS-LC calls cannot fail: every 32-byte string is a valid X25519 private key,
/// and the lengths are fixed by the types.
const X25519_INFALLIBLE: &str = "X25519 accepts any 32-byte private key";

impl X25519Key {
    /// Loads `private` (AWS-LC keeps a copy, which it wipes when this is dropped).
    pub(crate) fn new(private: &PrivateKey) -> Self {
        let key = agreement::PrivateKey::from_private_key(&agreement::X25519, &private.0)
            .expect(X25519_INFALLIBLE);
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(key.compute_public_key().expect(X25519_INFALLIBLE).as_ref());
        Self { key, public: PublicKey(public) }
    }

    /// A fresh key from a cryptographically secure generator.
    pub(crate) fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        Self::new(&PrivateKey::generate(rng))
    }

    /// The matching public key.
    pub(crate) fn public_key(&self) -> PublicKey {
        self.public
    }

    /// X25519 with a peer's public key; `None` for an all-zero result, as
    /// [`PrivateKey::diffie_hellman`].
    pub(crate) fn diffie_hellman(&self, public: &PublicKey) -> Option<SharedSecret> {
        let peer = agreement::UnparsedPublicKey::new(&agreement::X25519, public.0);
        // AWS-LC refuses an all-zero result, as WireGuard requires.
        agreement::agree(&self.key, peer, (), |shared| {
            let mut secret = SharedSecret([0; KEY_LEN]);
            secret.0.copy_from_slice(shared);
            Ok(secret)
        })
        .ok()
    }
}

impl fmt::Debug for X25519Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Key").field("public", &self.public).finish_non_exhaustive()
    }
}

/// A Curve25519 private key, always stored clamped.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PrivateKey([u8; KEY_LEN]);

impl PrivateKey {
    /// Wraps raw bytes, clamping them as `wg genkey` does.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> Self {
        bytes[0] &= 248;
        bytes[31] = (bytes[31] & 127) | 64;
        Self(bytes)
    }

    /// A fresh key from a cryptographically secure generator.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut bytes = [0u8; KEY_LEN];
        rng.fill_bytes(&mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// Parses the base64 form `wg genkey` prints.
    ///
    /// # Errors
    /// A [`KeyParseError`] saying what is wrong unless the text is 44 characters of canonical
    /// base64 (leading and trailing whitespace aside).
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self::from_bytes)
    }

    /// Parses the hex form of the userspace API.
    ///
    /// # Errors
    /// [`KeyParseError::Hex`] unless the text is 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self::from_bytes)
    }

    /// The secret in base64. Named so that every place that reveals a key is easy to audit.
    pub fn to_base64_secret(&self) -> String {
        Base64::encode_string(&self.0)
    }

    /// The secret in lowercase hex, for the userspace API's `get` answer.
    pub fn to_hex_secret(&self) -> String {
        encode_hex(&self.0)
    }

    /// The raw secret bytes.
    pub fn as_bytes_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The matching public key (what `wg pubkey` prints).
    pub fn public_key(&self) -> PublicKey {
        X25519Key::new(self).public_key()
    }

    /// X25519 with a peer's public key. `None` when the result is all zeros (a low-order point),
    /// which WireGuard treats as a failed handshake; that is the only check a public key needs.
    pub fn diffie_hellman(&self, public: &PublicKey) -> Option<SharedSecret> {
        X25519Key::new(self).diffie_hellman(public)
    }

    /// Whether this is the all-zero key the userspace API uses to mean "no key".
    pub fn is_zero(&self) -> bool {
        self.0.ct_eq(&[0u8; KEY_LEN]).into()
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(<redacted>)")
    }
}

/// The output of X25519, consumed by the handshake's key derivation.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SharedSecret([u8; KEY_LEN]);

impl SharedSecret {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A symmetric preshared key mixed into the handshake (`wg genpsk`).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// The all-zero key, which WireGuard uses when no preshared key is configured.
    pub const fn zero() -> Self {
        Self([0u8; KEY_LEN])
    }

    /// Wraps raw bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// A fresh key from a cryptographically secure generator (`wg genpsk`).
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        let mut key = Self::zero();
        rng.fill_bytes(&mut key.0);
        key
    }

    /// Parses the base64 form.
    ///
    /// # Errors
    /// A [`KeyParseError`] saying what is wrong unless the text is 44 characters of canonical
    /// base64 (leading and trailing whitespace aside).
    pub fn from_base64(text: &str) -> Result<Self, KeyParseError> {
        decode_base64(text).map(Self)
    }

    /// Parses the hex form of the userspace API.
    ///
    /// # Errors
    /// [`KeyParseError::Hex`] unless the text is 64 hex digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        decode_hex(text).map(Self)
    }

    /// The secret in base64.
    pub fn to_base64_secret(&self) -> String {
        Base64::encode_string(&self.0)
    }

    /// The secret in lowercase hex.
    pub fn to_hex_secret(&self) -> String {
        encode_hex(&self.0)
    }

    /// The raw secret bytes.
    pub fn as_bytes_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Whether this is the all-zero "no preshared key" value.
    pub fn is_zero(&self) -> bool {
        self.0.ct_eq(&[0u8; KEY_LEN]).into()
    }
}

impl PartialEq for PresharedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for PresharedKey {}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A pair produced by `wg genkey | tee /dev/stderr | wg pubkey` (wireguard-tools v1.0.20210914).
    const WG_PRIVATE: &str = "2FkIUyxNcXlS+5AKQHncW+pwQIlPBsqVsInFxiWGpWw=";
    const WG_PUBLIC: &str = "vreiV32Fc+3EMQo3WGmmfRJ6Vy8WHQDgv9matssdIXo=";

    #[test]
    fn public_key_matches_wg_pubkey() {
        let private = PrivateKey::from_base64(WG_PRIVATE).unwrap();
        assert_eq!(private.public_key().to_base64(), WG_PUBLIC);
        assert_eq!(private.to_base64_secret(), WG_PRIVATE);
    }

    #[test]
    fn private_keys_are_clamped_on_load() {
        let key = PrivateKey::from_bytes([0xff; 32]);
        let bytes = key.as_bytes_secret();
        assert_eq!(bytes[0], 0xf8);
        assert_eq!(bytes[31], 0x7f);
        let hex = "ff".repeat(32);
        assert_eq!(PrivateKey::from_hex(&hex).unwrap(), key);
    }

    #[test]
    fn base64_must_be_canonical_and_exact() {
        let error = |text: &str| PublicKey::from_base64(text).unwrap_err();
        assert_eq!(error(""), KeyParseError::Length { characters: 0 });
        assert_eq!(error(&WG_PUBLIC[..43]), KeyParseError::Length { characters: 43 });
        // Same length, non-zero trailing bits: `wg` refuses these, so do we.
        assert_eq!(error(&format!("{}x=", &WG_PUBLIC[..42])), KeyParseError::TrailingBits);
        assert!(PublicKey::from_base64(&format!(" {WG_PUBLIC}\n")).is_ok());
    }

    /// Each way a key can be wrong gets its own message saying what is wrong.
    #[test]
    fn base64_errors_say_what_is_wrong() {
        let message = |text: &str| PublicKey::from_base64(text).unwrap_err().to_string();
        // 44 characters decoding to 31 bytes.
        let short = format!("{}A==", &WG_PUBLIC[..41]);
        assert_eq!(short.len(), 44);
        assert!(
            message(&short).starts_with("decodes to 31 bytes instead of 32"),
            "{}",
            message(&short)
        );
        let long = format!("{}A", &WG_PUBLIC[..43]);
        assert!(
            message(&long).starts_with("decodes to 33 bytes instead of 32"),
            "{}",
            message(&long)
        );
        let bad = format!("{}%{}", &WG_PUBLIC[..6], &WG_PUBLIC[7..]);
        assert!(message(&bad).starts_with("character 7 (`%`) is not base64"), "{}", message(&bad));
        assert!(message("abc").starts_with("3 characters, expected 44"));
        let padded = format!("{}={}", &WG_PUBLIC[..20], &WG_PUBLIC[21..]);
        assert!(message(&padded).starts_with("`=` in the middle"), "{}", message(&padded));
        assert!(
            message(&format!("{}x=", &WG_PUBLIC[..42])).contains("sets bits no 32-byte key has")
        );
    }

    #[test]
    fn hex_round_trip_and_rejects() {
        let key = PublicKey::from_base64(WG_PUBLIC).unwrap();
        let hex = key.to_hex();
        assert_eq!(hex.len(), 64);
        assert_eq!(PublicKey::from_hex(&hex).unwrap(), key);
        assert_eq!(PublicKey::from_hex(&hex.to_uppercase()).unwrap(), key);
        assert_eq!(PublicKey::from_hex(&hex[1..]), Err(KeyParseError::Hex));
        assert_eq!(PublicKey::from_hex(&format!("g{}", &hex[1..])), Err(KeyParseError::Hex));
    }

    #[test]
    fn padding_beyond_two_is_refused() {
        let text = format!("{}===", &WG_PUBLIC[..41]);
        assert_eq!(PublicKey::from_base64(&text), Err(KeyParseError::Padding));
    }

    proptest::proptest! {
        /// Every key survives both encodings, and `wg`'s form is what the encoder prints.
        #[test]
        fn encodings_round_trip(bytes in proptest::array::uniform32(proptest::num::u8::ANY)) {
            let key = PresharedKey::from_bytes(bytes);
            let text = key.to_base64_secret();
            proptest::prop_assert_eq!(text.len(), BASE64_LEN);
            proptest::prop_assert!(text.ends_with('=') && !text.ends_with("=="));
            proptest::prop_assert_eq!(PresharedKey::from_base64(&text).unwrap(), key.clone());
            let hex = key.to_hex_secret();
            proptest::prop_assert_eq!(&hex, &hex.to_lowercase());
            proptest::prop_assert_eq!(PresharedKey::from_hex(&hex).unwrap(), key);
        }

        /// Of the key-shaped strings, only canonical encodings are accepted: whatever parses
        /// prints back exactly as it was written, and the rest set bits past the 32nd byte.
        #[test]
        fn only_canonical_base64_is_accepted(text in "[A-Za-z0-9+/]{43}=") {
            match PublicKey::from_base64(&text) {
                Ok(key) => proptest::prop_assert_eq!(key.to_base64(), text),
                Err(error) => proptest::prop_assert_eq!(error, KeyParseError::TrailingBits),
            }
        }
    }

    #[test]
    fn debug_never_prints_secrets() {
        let private = PrivateKey::from_base64(WG_PRIVATE).unwrap();
        let psk = PresharedKey::from_bytes([7; 32]);
        let shown = format!("{private:?} {psk:?}");
        assert!(!shown.contains(&WG_PRIVATE[..10]));
        assert!(!shown.contains(&psk.to_base64_secret()[..10]));
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn low_order_points_fail_dh() {
        let private = PrivateKey::from_base64(WG_PRIVATE).unwrap();
        assert!(private.diffie_hellman(&PublicKey::from_bytes([0; 32])).is_none());
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(private.diffie_hellman(&PublicKey::from_bytes(one)).is_none());
    }

    #[test]
    fn dh_agrees() {
        let mut rng: rand_chacha::ChaCha20Rng = rand_core::SeedableRng::from_seed([1; 32]);
        let a = PrivateKey::generate(&mut rng);
        let b = PrivateKey::generate(&mut rng);
        let ab = a.diffie_hellman(&b.public_key()).unwrap();
        let ba = b.diffie_hellman(&a.public_key()).unwrap();
        assert_eq!(ab.as_bytes(), ba.as_bytes());
    }
}
