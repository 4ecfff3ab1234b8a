//! The four WireGuard messages on the wire (whitepaper §5.4).
//!
//! Parsing is total: every function takes arbitrary bytes and returns `None` (or a typed error)
//! instead of panicking. A parsed message borrows fixed-size arrays from the datagram, so once
//! the length check passed no accessor can go out of bounds. Building writes into fixed-size
//! arrays whose layout is checked at compile time.

/// Message type of a handshake initiation.
pub const TYPE_INITIATION: u8 = 1;
/// Message type of a handshake response.
pub const TYPE_RESPONSE: u8 = 2;
/// Message type of a cookie reply.
pub const TYPE_COOKIE_REPLY: u8 = 3;
/// Message type of transport data.
pub const TYPE_DATA: u8 = 4;

/// Size of a handshake initiation.
pub const INITIATION_LEN: usize = 148;
/// Size of a handshake response.
pub const RESPONSE_LEN: usize = 92;
/// Size of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;
/// Size of a transport data header: type, receiver index, counter.
pub const DATA_HEADER_LEN: usize = 16;
/// Size of the Poly1305 tag after the encrypted payload.
pub const TAG_LEN: usize = 16;
/// The smallest transport message: an encrypted keepalive.
pub const DATA_MIN_LEN: usize = DATA_HEADER_LEN + TAG_LEN;
/// Bytes a tunnel adds around each packet on top of the outer IP and UDP headers.
pub const DATA_OVERHEAD: usize = DATA_HEADER_LEN + TAG_LEN;

/// Offset of `mac1` in an initiation; everything before it is covered by `mac1`.
pub(crate) const INITIATION_MAC1: usize = 116;
/// Offset of `mac1` in a response.
pub(crate) const RESPONSE_MAC1: usize = 60;

/// What kind of message a datagram claims to be, from its first four bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// A handshake initiation.
    Initiation,
    /// A handshake response.
    Response,
    /// A cookie reply.
    CookieReply,
    /// Transport data.
    Data,
}

impl MessageType {
    /// Classifies a datagram by its type field and length; `None` for anything that cannot be a
    /// WireGuard message (the three reserved bytes must be zero).
    pub fn of(datagram: &[u8]) -> Option<Self> {
        let (header, _) = datagram.split_first_chunk::<4>()?;
        let kind = match *header {
            [TYPE_INITIATION, 0, 0, 0] if datagram.len() == INITIATION_LEN => Self::Initiation,
            [TYPE_RESPONSE, 0, 0, 0] if datagram.len() == RESPONSE_LEN => Self::Response,
            [TYPE_COOKIE_REPLY, 0, 0, 0] if datagram.len() == COOKIE_REPLY_LEN => Self::CookieReply,
            [TYPE_DATA, 0, 0, 0] if datagram.len() >= DATA_MIN_LEN => Self::Data,
            _ => return None,
        };
        Some(kind)
    }
}

/// Splits `N` bytes off the front of `bytes`, advancing it.
fn take<'a, const N: usize>(bytes: &mut &'a [u8]) -> Option<&'a [u8; N]> {
    let (head, tail) = bytes.split_first_chunk::<N>()?;
    *bytes = tail;
    Some(head)
}

fn take_u32(bytes: &mut &[u8]) -> Option<u32> {
    take::<4>(bytes).map(|b| u32::from_le_bytes(*b))
}

/// A parsed handshake initiation (type 1). Its MACs are checked by offset in `cookie`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Initiation<'a> {
    pub(crate) sender: u32,
    pub(crate) ephemeral: &'a [u8; 32],
    pub(crate) encrypted_static: &'a [u8; 48],
    pub(crate) encrypted_timestamp: &'a [u8; 28],
}

impl<'a> Initiation<'a> {
    pub(crate) fn parse(mut bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() != INITIATION_LEN || take::<4>(&mut bytes)? != &[TYPE_INITIATION, 0, 0, 0] {
            return None;
        }
        Some(Self {
            sender: take_u32(&mut bytes)?,
            ephemeral: take(&mut bytes)?,
            encrypted_static: take(&mut bytes)?,
            encrypted_timestamp: take(&mut bytes)?,
        })
    }
}

/// Writes an initiation without its MACs (the cookie module fills them in).
pub(crate) fn emit_initiation(
    sender: u32,
    ephemeral: &[u8; 32],
    encrypted_static: &[u8; 48],
    encrypted_timestamp: &[u8; 28],
) -> [u8; INITIATION_LEN] {
    let mut out = [0u8; INITIATION_LEN];
    out[0] = TYPE_INITIATION;
    out[4..8].copy_from_slice(&sender.to_le_bytes());
    out[8..40].copy_from_slice(ephemeral);
    out[40..88].copy_from_slice(encrypted_static);
    out[88..116].copy_from_slice(encrypted_timestamp);
    out
}

/// A parsed handshake response (type 2).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Response<'a> {
    pub(crate) sender: u32,
    pub(crate) receiver: u32,
    pub(crate) ephemeral: &'a [u8; 32],
    pub(crate) encrypted_nothing: &'a [u8; 16],
}

impl<'a> Response<'a> {
    pub(crate) fn parse(mut bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() != RESPONSE_LEN || take::<4>(&mut bytes)? != &[TYPE_RESPONSE, 0, 0, 0] {
            return None;
        }
        Some(Self {
            sender: take_u32(&mut bytes)?,
            receiver: take_u32(&mut bytes)?,
            ephemeral: take(&mut bytes)?,
            encrypted_nothing: take(&mut bytes)?,
        })
    }
}

/// Writes a response without its MACs.
pub(crate) fn emit_response(
    sender: u32,
    receiver: u32,
    ephemeral: &[u8; 32],
    encrypted_nothing: &[u8; 16],
) -> [u8; RESPONSE_LEN] {
    let mut out = [0u8; RESPONSE_LEN];
    out[0] = TYPE_RESPONSE;
    out[4..8].copy_from_slice(&sender.to_le_bytes());
    out[8..12].copy_from_slice(&receiver.to_le_bytes());
    out[12..44].copy_from_slice(ephemeral);
    out[44..60].copy_from_slice(encrypted_nothing);
    out
}

/// A parsed cookie reply (type 3).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CookieReply<'a> {
    pub(crate) receiver: u32,
    pub(crate) nonce: &'a [u8; 24],
    pub(crate) encrypted_cookie: &'a [u8; 32],
}

impl<'a> CookieReply<'a> {
    pub(crate) fn parse(mut bytes: &'a [u8]) -> Option<Self> {
        if bytes.len() != COOKIE_REPLY_LEN
            || take::<4>(&mut bytes)? != &[TYPE_COOKIE_REPLY, 0, 0, 0]
        {
            return None;
        }
        Some(Self {
            receiver: take_u32(&mut bytes)?,
            nonce: take(&mut bytes)?,
            encrypted_cookie: take(&mut bytes)?,
        })
    }
}

/// Writes a cookie reply.
pub(crate) fn emit_cookie_reply(
    receiver: u32,
    nonce: &[u8; 24],
    encrypted_cookie: &[u8; 32],
) -> [u8; COOKIE_REPLY_LEN] {
    let mut out = [0u8; COOKIE_REPLY_LEN];
    out[0] = TYPE_COOKIE_REPLY;
    out[4..8].copy_from_slice(&receiver.to_le_bytes());
    out[8..32].copy_from_slice(nonce);
    out[32..64].copy_from_slice(encrypted_cookie);
    out
}

/// The header of a transport data message (type 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// The receiver's session index.
    pub receiver: u32,
    /// The message counter, which is also the AEAD nonce.
    pub counter: u64,
}

impl DataHeader {
    /// Parses the header of a transport message, checking type and minimum length.
    pub fn parse(mut bytes: &[u8]) -> Option<Self> {
        if bytes.len() < DATA_MIN_LEN || take::<4>(&mut bytes)? != &[TYPE_DATA, 0, 0, 0] {
            return None;
        }
        let receiver = take_u32(&mut bytes)?;
        let counter = u64::from_le_bytes(*take::<8>(&mut bytes)?);
        Some(Self { receiver, counter })
    }

    /// The 16 header bytes.
    pub fn to_bytes(self) -> [u8; DATA_HEADER_LEN] {
        let mut out = [0u8; DATA_HEADER_LEN];
        out[0] = TYPE_DATA;
        out[4..8].copy_from_slice(&self.receiver.to_le_bytes());
        out[8..16].copy_from_slice(&self.counter.to_le_bytes());
        out
    }
}

/// Reads the receiver index of any message that carries one (response, cookie reply, data).
pub fn receiver_index(datagram: &[u8]) -> Option<u32> {
    let offset = match MessageType::of(datagram)? {
        MessageType::Initiation => return None,
        MessageType::Response => 8,
        MessageType::CookieReply | MessageType::Data => 4,
    };
    let bytes = datagram.get(offset..offset + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_follow_the_layout() {
        assert_eq!(INITIATION_LEN, 4 + 4 + 32 + 48 + 28 + 16 + 16);
        assert_eq!(INITIATION_MAC1, INITIATION_LEN - 32);
        assert_eq!(RESPONSE_LEN, 4 + 4 + 4 + 32 + 16 + 16 + 16);
        assert_eq!(RESPONSE_MAC1, RESPONSE_LEN - 32);
        assert_eq!(COOKIE_REPLY_LEN, 4 + 4 + 24 + 32);
    }

    #[test]
    fn round_trips() {
        let init = emit_initiation(0x0102_0304, &[1; 32], &[2; 48], &[3; 28]);
        let parsed = Initiation::parse(&init).unwrap();
        assert_eq!(parsed.sender, 0x0102_0304);
        assert_eq!(parsed.ephemeral, &[1; 32]);
        assert_eq!(parsed.encrypted_static, &[2; 48]);
        assert_eq!(parsed.encrypted_timestamp, &[3; 28]);
        assert_eq!(MessageType::of(&init), Some(MessageType::Initiation));

        let resp = emit_response(7, 9, &[4; 32], &[5; 16]);
        let parsed = Response::parse(&resp).unwrap();
        assert_eq!((parsed.sender, parsed.receiver), (7, 9));
        assert_eq!(receiver_index(&resp), Some(9));

        let cookie = emit_cookie_reply(11, &[6; 24], &[7; 32]);
        let parsed = CookieReply::parse(&cookie).unwrap();
        assert_eq!(parsed.receiver, 11);
        assert_eq!(parsed.nonce, &[6; 24]);
        assert_eq!(receiver_index(&cookie), Some(11));

        let header = DataHeader { receiver: 0xdead_beef, counter: u64::MAX - 1 };
        let mut data = header.to_bytes().to_vec();
        data.extend_from_slice(&[0; TAG_LEN]);
        assert_eq!(DataHeader::parse(&data), Some(header));
        assert_eq!(receiver_index(&data), Some(0xdead_beef));
    }

    #[test]
    fn reserved_bytes_and_lengths_are_enforced() {
        let mut init = emit_initiation(1, &[0; 32], &[0; 48], &[0; 28]);
        init[3] = 1;
        assert!(Initiation::parse(&init).is_none());
        assert_eq!(MessageType::of(&init), None);
        assert_eq!(MessageType::of(&[4, 0, 0, 0]), None);
        assert_eq!(MessageType::of(&[]), None);
        assert!(DataHeader::parse(&[4, 0, 0, 0, 1, 2, 3, 4]).is_none());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = MessageType::of(&bytes);
            let _ = Initiation::parse(&bytes);
            let _ = Response::parse(&bytes);
            let _ = CookieReply::parse(&bytes);
            let _ = DataHeader::parse(&bytes);
            let _ = receiver_index(&bytes);
        }
    }
}
