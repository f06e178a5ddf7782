//! A walk over a Kafka answer before `kafka-protocol` decodes it, refusing any array whose
//! count is larger than the bytes left.
//!
//! The crate reserves room for an array from the count the peer sends (`Vec::with_capacity`)
//! before reading a single element, so a few bytes claiming four billion replicas make the
//! helper ask for hundreds of gigabytes and abort, well inside the frame cap. Every element
//! takes at least one byte on the wire, so a count above the bytes left is a lie; the walk
//! follows the shapes of the answers the helper reads (flexible versions only) and checks
//! each count against what is left at that point.

/// One field of a flexible-version Kafka message.
#[derive(Clone, Copy, Debug)]
pub enum Field {
    Fixed(usize),
    /// A compact (nullable) string.
    String,
    /// A compact array of structures with these fields (tagged fields implied).
    Array(&'static [Field]),
}

use Field::{Array, Fixed, String as Str};

const REPLICA: &[Field] = &[Fixed(4), Fixed(16), Fixed(8), Fixed(8), Fixed(8)];
const PARTITION: &[Field] = &[
    Fixed(4),
    Fixed(2),
    Str,
    Fixed(4),
    Fixed(4),
    Fixed(8),
    Array(REPLICA),
    Array(REPLICA),
];
const TOPIC: &[Field] = &[Str, Array(PARTITION)];
const LISTENER: &[Field] = &[Str, Str, Fixed(2)];
const NODE: &[Field] = &[Fixed(4), Array(LISTENER)];

/// The response header v1: correlation id and tagged fields.
pub const RESPONSE_HEADER: &[Field] = &[Fixed(4)];
/// DescribeQuorumResponse v2.
pub const DESCRIBE_QUORUM_V2: &[Field] = &[Fixed(2), Str, Array(TOPIC), Array(NODE)];
/// AddRaftVoterResponse v0 and RemoveRaftVoterResponse v0.
pub const VOTER_CHANGE_V0: &[Field] = &[Fixed(4), Fixed(2), Str];

struct Walk<'a> {
    bytes: &'a [u8],
}

impl Walk<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.bytes.len() {
            return Err(format!(
                "claims {n} bytes where {} are left",
                self.bytes.len()
            ));
        }
        self.bytes = &self.bytes[n..];
        Ok(())
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("ends inside a number")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number longer than five bytes".to_owned())
    }

    fn tagged_fields(&mut self) -> Result<(), String> {
        let count = self.varint()?;
        for _ in 0..count {
            self.varint()?;
            let size = self.varint()?;
            self.skip(usize::try_from(size).map_err(|e| e.to_string())?)?;
        }
        Ok(())
    }

    fn structure(&mut self, fields: &[Field]) -> Result<(), String> {
        for field in fields {
            match *field {
                Fixed(n) => self.skip(n)?,
                Str => {
                    let n = self.varint()?;
                    self.skip(usize::try_from(n.saturating_sub(1)).map_err(|e| e.to_string())?)?;
                }
                Array(element) => {
                    let count = self.varint()?.saturating_sub(1);
                    if count > self.bytes.len() as u64 {
                        return Err(format!(
                            "an array claims {count} entries where {} bytes are left",
                            self.bytes.len()
                        ));
                    }
                    for _ in 0..count {
                        self.structure(element)?;
                    }
                }
            }
        }
        self.tagged_fields()
    }
}

/// Checks that `header` followed by `body` fits in `bytes`: every array's count at most the
/// bytes left where it stands. Bytes after the message are allowed (the decoder ignores them).
pub fn check(bytes: &[u8], header: &[Field], body: &[Field]) -> Result<(), String> {
    let mut walk = Walk { bytes };
    walk.structure(header)?;
    walk.structure(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    /// An answer whose topics array claims u32::MAX - 1 entries, in 12 bytes.
    fn lying_answer() -> Vec<u8> {
        let mut bytes = vec![0, 0, 0, 1, 0]; // correlation id 1, no tagged fields
        bytes.extend([0, 0, 0]); // error code 0, null error message
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0x0f]); // topics: 2^32 - 1 → 2^32 - 2 entries
        bytes
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_decoding() {
        let error = check(&lying_answer(), RESPONSE_HEADER, DESCRIBE_QUORUM_V2).unwrap_err();
        assert!(error.contains("4294967294 entries"), "{error}");
    }

    /// A DescribeQuorum v2 answer as a leader sends it: one voter, one node with a listener.
    fn real_answer() -> Vec<u8> {
        let mut b = vec![0, 0, 0, 1, 0]; // header
        b.extend([0, 0, 0]); // error code, null message
        b.push(2); // one topic
        let topic = b"__cluster_metadata";
        b.push(topic.len() as u8 + 1);
        b.extend(topic);
        b.push(2); // one partition
        b.extend([0, 0, 0, 0, 0, 0, 0]); // index, error code, null message
        b.extend([0, 0, 0, 3, 0, 0, 0, 7]); // leader 3, epoch 7
        b.extend([0; 8]); // high watermark
        b.push(2); // one voter
        b.extend([0, 0, 0, 3]);
        b.extend([9; 16]); // directory id
        b.extend([0; 24]); // offsets and times
        b.push(0);
        b.push(1); // no observers
        b.extend([0, 0]); // partition and topic tagged fields
        b.push(2); // one node
        b.extend([0, 0, 0, 3]);
        b.push(2); // one listener
        b.extend([11]);
        b.extend(b"CONTROLLER");
        b.extend([2, b'h', 0x23, 0x85, 0]); // host "h", port 9093
        b.extend([0, 0]); // node and answer tagged fields
        b
    }

    #[test]
    fn what_a_leader_sends_passes_the_walk_and_decodes() {
        use kafka_protocol::messages::{DescribeQuorumResponse, ResponseHeader};
        use kafka_protocol::protocol::Decodable;
        let bytes = real_answer();
        check(&bytes, RESPONSE_HEADER, DESCRIBE_QUORUM_V2).unwrap();
        let mut buf = bytes::Bytes::from(bytes.clone());
        ResponseHeader::decode(&mut buf, 1).unwrap();
        let answer = DescribeQuorumResponse::decode(&mut buf, 2).unwrap();
        assert_eq!(answer.topics[0].partitions[0].current_voters.len(), 1);
        assert_eq!(answer.nodes[0].listeners[0].port, 9093);
        assert!(
            !buf.has_remaining(),
            "the walk and the crate read the same fields"
        );
        // Cut anywhere, it is refused (never read past the end).
        for cut in 0..bytes.len() {
            assert!(
                check(&bytes[..cut], RESPONSE_HEADER, DESCRIBE_QUORUM_V2).is_err(),
                "{cut}"
            );
        }
        // A voter-change answer: throttle, error code, message "no".
        let voter = [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0x28, 3, b'n', b'o', 0];
        check(&voter, RESPONSE_HEADER, VOTER_CHANGE_V0).unwrap();
    }
}
