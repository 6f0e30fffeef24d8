//! Reading integers of any size at any bit offset, in either byte order.

use super::plan::IntSpec;

/// Reads the raw bits of an integer at bit offset `pos` of `data`, without
/// sign extension. `None` when it would read past the end of `data`.
#[inline(always)]
pub(crate) fn read_bits(data: &[u8], pos: u64, spec: IntSpec) -> Option<u64> {
    let byte = (pos >> 3) as usize;
    let shift = (pos & 7) as u32;
    let bits = spec.bits as u32;
    // One 8-byte load, a shift and a mask, whatever the size: no branch on
    // the field's size, which alternates from field to field.
    if let Some(w) = data.get(byte..byte.wrapping_add(8)) {
        if shift + bits <= 64 && bits > 0 {
            let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
            let mask = u64::MAX >> (64 - bits);
            return Some(if spec.be {
                (w.swap_bytes() << shift) >> (64 - bits)
            } else {
                (w >> shift) & mask
            });
        }
    }
    read_bits_slow(data, byte, shift, bits, spec.be)
}

/// Reads an integer at bit offset `pos` of `data` as an i64, sign-extended
/// when `spec` is signed (unsigned 64-bit values above `i64::MAX` wrap).
/// One load and two shifts in the common case: the value is moved to the
/// top of the word, then shifted down, arithmetically for signed ones.
#[inline(always)]
pub(crate) fn read_int(data: &[u8], pos: u64, spec: &IntSpec) -> Option<i64> {
    let byte = (pos >> 3) as usize;
    let shift = (pos & 7) as u32;
    let bits = spec.bits as u32;
    // (`byte` is at most 2^61: the sum does not overflow.)
    if byte + 8 <= data.len() && shift + bits <= 64 && bits > 0 {
        let w = u64::from_le_bytes(data[byte..byte + 8].try_into().unwrap_or([0; 8]));
        let top = if spec.be {
            w.swap_bytes() << shift
        } else {
            w << (64 - shift - bits)
        };
        let down = 64 - bits;
        return Some(if spec.signed {
            (top as i64) >> down
        } else {
            (top >> down) as i64
        });
    }
    Some(to_i64(
        read_bits_slow(data, byte, shift, bits, spec.be)?,
        *spec,
    ))
}

#[inline(never)]
fn read_bits_slow(data: &[u8], byte: usize, shift: u32, bits: u32, be: bool) -> Option<u64> {
    if bits == 0 || bits > 64 {
        return None;
    }
    let nbytes = (shift + bits).div_ceil(8) as usize;
    let src = data.get(byte..byte + nbytes)?;
    let mut acc: u128 = 0;
    if be {
        // Big-endian bit fields fill each byte from its most significant bit.
        for &b in src {
            acc = (acc << 8) | b as u128;
        }
        acc >>= nbytes as u32 * 8 - shift - bits;
    } else {
        for (i, &b) in src.iter().enumerate() {
            acc |= (b as u128) << (8 * i);
        }
        acc >>= shift;
    }
    let mask = if bits == 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    Some(acc as u64 & mask)
}

/// Sign-extends the low `bits` of `raw` when `signed`.
#[inline(always)]
pub(crate) fn to_i64(raw: u64, spec: IntSpec) -> i64 {
    // Branch-free: shifting by 0 leaves unsigned values as they are.
    let sh = (64 - spec.bits.clamp(1, 64) as u32) * spec.signed as u32;
    ((raw << sh) as i64) >> sh
}

/// The value of a raw integer as an i128, honouring signedness.
#[inline]
pub(crate) fn to_i128(raw: u64, spec: IntSpec) -> i128 {
    if spec.signed {
        to_i64(raw, spec) as i128
    } else {
        raw as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bits: u8, be: bool) -> IntSpec {
        IntSpec {
            bits,
            signed: false,
            be,
        }
    }

    #[test]
    fn little_endian_bit_fields() {
        // 3 bits = 5, then 13 bits = 0x1abc, then a 64-bit value at bit 16+5.
        let mut v: u128 = 5 | (0x1abc << 3);
        v |= (0xdead_beef_0123_4567u128) << 21;
        let bytes = v.to_le_bytes();
        assert_eq!(read_bits(&bytes, 0, spec(3, false)), Some(5));
        assert_eq!(read_bits(&bytes, 3, spec(13, false)), Some(0x1abc));
        assert_eq!(
            read_bits(&bytes, 21, spec(64, false)),
            Some(0xdead_beef_0123_4567)
        );
        assert_eq!(
            read_bits(&bytes, 8, spec(16, false)),
            Some((v >> 8) as u16 as u64)
        );
    }

    #[test]
    fn big_endian_bit_fields() {
        // MSB first: 3 bits 0b101, 13 bits 0x1abc, 64 bits at offset 21.
        let mut v: u128 = 0b101u128 << 125;
        v |= 0x1abcu128 << (125 - 13);
        v |= 0xdead_beef_0123_4567u128 << (128 - 21 - 64);
        let bytes = v.to_be_bytes();
        assert_eq!(read_bits(&bytes, 0, spec(3, true)), Some(5));
        assert_eq!(read_bits(&bytes, 3, spec(13, true)), Some(0x1abc));
        assert_eq!(
            read_bits(&bytes, 21, spec(64, true)),
            Some(0xdead_beef_0123_4567)
        );
        assert_eq!(read_bits(&[0x12, 0x34], 0, spec(16, true)), Some(0x1234));
    }

    #[test]
    fn read_int_agrees_with_read_bits() {
        let bytes: Vec<u8> = (0..24u32).map(|i| (i * 37 + 11) as u8 ^ 0xa5).collect();
        for be in [false, true] {
            for signed in [false, true] {
                for bits in 1..=64u8 {
                    for pos in 0..(24 * 8 - bits as u64 + 8) {
                        let spec = IntSpec { bits, signed, be };
                        let want = read_bits(&bytes, pos, spec).map(|r| to_i64(r, spec));
                        assert_eq!(read_int(&bytes, pos, &spec), want, "{spec:?} at {pos}");
                    }
                }
            }
        }
    }

    #[test]
    fn bounds_and_signs() {
        assert_eq!(read_bits(&[1, 2, 3], 8, spec(32, false)), None);
        assert_eq!(read_bits(&[0xff], 4, spec(5, false)), None);
        let s = IntSpec {
            bits: 5,
            signed: true,
            be: false,
        };
        assert_eq!(to_i64(0b11111, s), -1);
        assert_eq!(to_i64(0b01111, s), 15);
    }
}
