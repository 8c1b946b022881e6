//! The fields of a line: runs of bytes between runs of ASCII whitespace,
//! exactly as `split(u8::is_ascii_whitespace)` without the empty runs.
//!
//! Splitting is most of what reading a record costs, so the common line
//! (printable ASCII fields separated by spaces, as AWS writes them) is
//! split eight bytes at a time: one pass over the line marks its spaces in
//! a bitset, and each field is then found with two bit scans instead of a
//! test per byte. Any other line (a tab or another control byte, a byte
//! outside ASCII, a line longer than [`WORD_AT_A_TIME_BYTES`]) is split a
//! byte at a time from where it turns out to be one, with the same result.

/// Lines up to this long are split a word at a time (a record of every
/// field AWS defines is about 400 bytes).
const WORD_AT_A_TIME_BYTES: usize = 512;
const BLOCKS: usize = WORD_AT_A_TIME_BYTES / 64;

const ONES: u64 = u64::from_le_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_le_bytes([0x80; 8]);

/// The fields of one line, in order. Blocks of 64 bytes are marked as
/// the fields are read, so reading the first few fields of a long line
/// (the router of `analyze`) looks at its first block only.
#[derive(Debug, Clone)]
pub(crate) struct Fields<'a> {
    line: &'a [u8],
    /// Where the next field is looked for.
    at: usize,
    /// Bit `i % 64` of block `i / 64`: byte `i` is a space (or past the
    /// end of the line, up to the next multiple of 8).
    spaces: [u64; BLOCKS],
    /// Blocks marked in `spaces`.
    marked: usize,
    /// False for a line too long, and from a block with a byte other than
    /// printable ASCII or a space on: split a byte at a time from there.
    word_at_a_time: bool,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Fields<'a> {
        Fields {
            line,
            at: 0,
            spaces: [0; BLOCKS],
            marked: 0,
            word_at_a_time: line.len() <= WORD_AT_A_TIME_BYTES,
        }
    }

    /// The first position at or after `from` whose bit is `space`, or the
    /// line's length when the line has none after `from` (positions past
    /// the line may be given too: callers treat them as its end); `None`
    /// when a block on the way cannot be read a word at a time.
    fn scan(&mut self, from: usize, space: bool) -> Option<usize> {
        let flip = if space { 0 } else { u64::MAX };
        let mut block = from / 64;
        // Positions before `from` are masked out of its block.
        let mut before = u64::MAX << (from % 64);
        loop {
            if block * 64 >= self.line.len() {
                return Some(self.line.len());
            }
            if block == self.marked && !self.mark_next_block() {
                return None;
            }
            let bits = (self.spaces[block] ^ flip) & before;
            if bits != 0 {
                return Some(block * 64 + bits.trailing_zeros() as usize);
            }
            block += 1;
            before = u64::MAX;
        }
    }

    /// Marks the spaces of the next block; false (and the line is split a
    /// byte at a time from now on) when it has a byte at or above 0x80 or
    /// below 0x20. Past the end of the line the last word is padded with
    /// spaces.
    fn mark_next_block(&mut self) -> bool {
        let first = self.marked * 64;
        let block = &self.line[first..self.line.len().min(first + 64)];
        let mut spaces = 0u64;
        let mut unusual = 0u64;
        let mut mark = |index: usize, word: u64| {
            // For ASCII bytes no sum below carries into the next byte, so
            // each byte's high bit says: byte + 0x5f < 0x80, i.e. byte <=
            // 0x20 (a space, or a control byte), and byte + 0x60 < 0x80,
            // i.e. byte < 0x20. A word with a byte at or above 0x80 is
            // turned away whatever its sums say.
            let at_most_space = !word.wrapping_add(0x5f * ONES) & HIGH_BITS;
            let control = !word.wrapping_add(0x60 * ONES) & HIGH_BITS;
            unusual |= (word & HIGH_BITS) | control;
            // One bit per byte: the eight high bits gathered into the top byte.
            let bits = (at_most_space >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56;
            spaces |= bits << (index * 8);
        };
        let mut words = block.chunks_exact(8);
        let mut index = 0;
        for word in words.by_ref() {
            mark(index, u64::from_le_bytes(word.try_into().unwrap_or([0; 8])));
            index += 1;
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            let mut padded = [b' '; 8];
            padded[..rest.len()].copy_from_slice(rest);
            mark(index, u64::from_le_bytes(padded));
        }
        if unusual != 0 {
            self.word_at_a_time = false;
            return false;
        }
        self.spaces[self.marked] = spaces;
        self.marked += 1;
        true
    }

    /// The next field a word at a time; `None` when the line turned out
    /// not to be for that.
    fn next_by_words(&mut self) -> Option<Option<(usize, usize)>> {
        let start = self.scan(self.at, false)?;
        if start >= self.line.len() {
            return Some(None);
        }
        let end = self.scan(start, true)?.min(self.line.len());
        Some(Some((start, end)))
    }

    /// The next field a byte at a time.
    fn next_by_bytes(&self) -> Option<(usize, usize)> {
        let line = self.line;
        let start = self.at
            + line[self.at..]
                .iter()
                .position(|byte| !byte.is_ascii_whitespace())?;
        let end = start
            + line[start..]
                .iter()
                .position(u8::is_ascii_whitespace)
                .unwrap_or(line.len() - start);
        Some((start, end))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let found = match self.word_at_a_time.then(|| self.next_by_words()).flatten() {
            Some(found) => found,
            // Fields before `at` were read either way: go on from there.
            None => self.next_by_bytes(),
        };
        let Some((start, end)) = found else {
            self.at = self.line.len();
            return None;
        };
        self.at = end;
        Some(&self.line[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_bytes(line: &[u8]) -> Vec<&[u8]> {
        line.split(u8::is_ascii_whitespace)
            .filter(|field| !field.is_empty())
            .collect()
    }

    #[test]
    fn splits_a_record() {
        let line = b"2 123456789010 eni-1 10.0.0.1 10.0.0.2 40000 22 6 1 44 1000 1050 ACCEPT OK";
        let fields: Vec<&[u8]> = Fields::new(line).collect();
        assert_eq!(fields, by_bytes(line));
        assert_eq!(fields.len(), 14);
        let mut fields = Fields::new(line);
        fields.by_ref().for_each(drop);
        assert!(fields.word_at_a_time);
        assert_eq!(fields.marked, 2);
    }

    #[test]
    fn every_length_around_the_words_and_blocks() {
        for len in 0..=WORD_AT_A_TIME_BYTES + 9 {
            for gap in [1, 2, 7] {
                let line: Vec<u8> = (0..len)
                    .map(|at| {
                        if at % (gap + 3) < gap {
                            b' '
                        } else {
                            b'a' + (at % 26) as u8
                        }
                    })
                    .collect();
                assert_eq!(
                    Fields::new(&line).collect::<Vec<_>>(),
                    by_bytes(&line),
                    "{len} {gap}"
                );
                let solid = vec![b'x'; len];
                assert_eq!(
                    Fields::new(&solid).collect::<Vec<_>>(),
                    by_bytes(&solid),
                    "{len}"
                );
            }
        }
    }

    #[test]
    fn unusual_lines_are_split_a_byte_at_a_time() {
        for line in [
            &b"a\tb  c"[..],
            b"\x0ba b\x0c",
            b"caf\xc3\xa9 au lait",
            b"\xff\xfe x",
            b"\r\n",
        ] {
            let mut fields = Fields::new(line);
            assert_eq!(
                fields.by_ref().collect::<Vec<_>>(),
                by_bytes(line),
                "{line:?}"
            );
            assert!(!fields.word_at_a_time, "{line:?}");
        }
        // An unusual byte in a later block: the first block was read a
        // word at a time, the rest a byte at a time.
        let mut line = vec![b'a'; 70];
        line[3] = b' ';
        line[66] = b'\t';
        assert_eq!(Fields::new(&line).collect::<Vec<_>>(), by_bytes(&line));
        let mut fields = Fields::new(&line);
        assert_eq!(fields.next(), Some(&line[..3]));
        assert!(fields.word_at_a_time);
    }

    proptest::proptest! {
        /// Any bytes, mostly of the kinds a record has.
        #[test]
        fn splits_as_the_standard_library(
            line in proptest::collection::vec(
                proptest::prop_oneof![
                    8 => proptest::sample::select(b"0123456789.:-abcdeOKACEPT ".to_vec()),
                    1 => proptest::num::u8::ANY,
                ],
                0..600,
            )
        ) {
            proptest::prop_assert_eq!(Fields::new(&line).collect::<Vec<_>>(), by_bytes(&line));
        }
    }
}
