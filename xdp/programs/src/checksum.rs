//! Internet checksum arithmetic (RFC 1071, RFC 1624).

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1624 equation 3: the checksum after one 16-bit word of the header changed from
/// `old` to `new`. Equal to a full recomputation, including the 0x0000/0xffff corner.
#[inline(always)]
pub fn update(check: u16, old: u16, new: u16) -> u16 {
    !fold((!check) as u32 + (!old) as u32 + new as u32)
}
