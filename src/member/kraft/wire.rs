//! The three Kafka requests the helper sends to KRaft controllers, over the Kafka protocol
//! (`kafka-protocol` encodes and decodes the messages; this module frames them): one
//! connection per request, every step bounded by [`CALL_TIMEOUT`].

use bytes::{Buf, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    add_raft_voter_request, describe_quorum_request, AddRaftVoterRequest, AddRaftVoterResponse,
    ApiKey, DescribeQuorumRequest, DescribeQuorumResponse, RemoveRaftVoterRequest,
    RemoveRaftVoterResponse, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::counts;
use crate::member::cluster::CALL_TIMEOUT;

/// The largest answer read: a DescribeQuorum of a few hundred replicas is a few KiB.
const MAX_RESPONSE: usize = 1024 * 1024;

/// The versions sent: DescribeQuorum v2 (KIP-853: directory ids and the voters' listeners),
/// AddRaftVoter v0 and RemoveRaftVoter v0 (Kafka 3.9 and later).
const DESCRIBE_QUORUM_VERSION: i16 = 2;
const RAFT_VOTER_VERSION: i16 = 0;

/// A voter change is answered once committed (or refused); the leader gives up 5 s earlier.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The metadata log, the one Raft partition of a KRaft cluster.
const METADATA_TOPIC: &str = "__cluster_metadata";

#[derive(Debug, thiserror::Error)]
pub enum KraftError {
    #[error("{address}: {why}")]
    Connection { address: String, why: String },
    #[error("{address} answered {error}{}", .message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        address: String,
        error: ResponseError,
        message: Option<String>,
    },
}

impl KraftError {
    pub fn kafka_error(&self) -> Option<ResponseError> {
        match self {
            KraftError::Kafka { error, .. } => Some(*error),
            KraftError::Connection { .. } => None,
        }
    }
}

fn failed(address: &str, why: impl std::fmt::Display) -> KraftError {
    KraftError::Connection {
        address: address.to_owned(),
        why: why.to_string(),
    }
}

/// A Kafka error code as an error, `Ok` for 0.
fn check(address: &str, code: i16, message: Option<&StrBytes>) -> Result<(), KraftError> {
    match ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => Err(KraftError::Kafka {
            address: address.to_owned(),
            error,
            message: message.map(|m| m.to_string()),
        }),
    }
}

/// Sends one request and reads its answer, all of it within `limit`. `shape`: the answer's
/// fields, walked before decoding (see [`counts`]).
async fn call<Req, Resp>(
    address: &str,
    (key, version, shape): (ApiKey, i16, &[counts::Field]),
    request: &Req,
    limit: Duration,
) -> Result<Resp, KraftError>
where
    Req: Encodable + HeaderVersion,
    Resp: Decodable + HeaderVersion,
{
    let exchange = async {
        let mut header = RequestHeader::default();
        header.request_api_key = key as i16;
        header.request_api_version = version;
        header.correlation_id = 1;
        header.client_id = Some(StrBytes::from_static_str("raft-injector"));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Req::header_version(version))
            .map_err(|e| failed(address, e))?;
        request
            .encode(&mut body, version)
            .map_err(|e| failed(address, e))?;
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .map_err(|e| failed(address, e))?;
        let length = u32::try_from(body.len()).map_err(|e| failed(address, e))?;
        stream
            .write_all(&length.to_be_bytes())
            .await
            .map_err(|e| failed(address, e))?;
        stream
            .write_all(&body)
            .await
            .map_err(|e| failed(address, e))?;
        let length = stream.read_u32().await.map_err(|e| failed(address, e))? as usize;
        if length > MAX_RESPONSE {
            return Err(failed(
                address,
                format!("answer of {length} bytes is larger than the {MAX_RESPONSE} read"),
            ));
        }
        let mut answer = vec![0; length];
        stream
            .read_exact(&mut answer)
            .await
            .map_err(|e| failed(address, e))?;
        counts::check(&answer, counts::RESPONSE_HEADER, shape)
            .map_err(|e| failed(address, format!("not a Kafka answer: {e}")))?;
        let mut answer = bytes::Bytes::from(answer);
        let header = ResponseHeader::decode(&mut answer, Resp::header_version(version))
            .map_err(|e| failed(address, format!("not a Kafka answer: {e}")))?;
        if header.correlation_id != 1 {
            return Err(failed(address, "answer to another request"));
        }
        let response = Resp::decode(&mut answer, version)
            .map_err(|e| failed(address, format!("not a Kafka answer: {e}")))?;
        if answer.has_remaining() {
            tracing::debug!(address, left = answer.remaining(), "bytes after the answer");
        }
        Ok(response)
    };
    tokio::time::timeout(limit, exchange)
        .await
        .map_err(|_| failed(address, format!("no answer within {limit:?}")))?
}

/// One replica of the metadata partition as the leader reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub id: i32,
    /// Kafka's text form of the directory id.
    pub directory_id: String,
    pub log_end_offset: i64,
    /// Leader's clock, milliseconds; -1 when it never fetched.
    pub last_fetch_ms: i64,
    /// When it last had all the leader had (leader's clock); -1 when never.
    pub last_caught_up_ms: i64,
}

/// The quorum as its leader describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quorum {
    /// Who answered: the leader.
    pub address: String,
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<Replica>,
    pub observers: Vec<Replica>,
    /// Each voter's `host:port` on the controller listener, as it advertised it.
    pub endpoints: Vec<(i32, String)>,
}

impl Quorum {
    pub fn endpoint(&self, id: i32) -> Option<&str> {
        self.endpoints
            .iter()
            .find(|(node, _)| *node == id)
            .map(|(_, e)| e.as_str())
    }

    /// The leader's clock now: its own entry's last fetch is the time it answered.
    pub fn leader_now_ms(&self) -> Option<i64> {
        self.voters
            .iter()
            .find(|r| r.id == self.leader_id)
            .map(|r| r.last_fetch_ms)
    }
}

/// Kafka's text form of a directory id (URL-safe base64, no padding).
pub fn uuid_text(uuid: &uuid::Uuid) -> String {
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(uuid.as_bytes())
}

/// A directory id from Kafka's text form.
pub fn parse_uuid(text: &str) -> Option<uuid::Uuid> {
    let bytes = base64_simd::URL_SAFE_NO_PAD.decode_to_vec(text).ok()?;
    uuid::Uuid::from_slice(&bytes).ok()
}

/// DescribeQuorum at `address`; only the leader answers it without an error.
pub async fn describe(address: &str) -> Result<Quorum, KraftError> {
    let mut partition = describe_quorum_request::PartitionData::default();
    partition.partition_index = 0;
    let mut topic = describe_quorum_request::TopicData::default();
    topic.topic_name = TopicName(StrBytes::from_static_str(METADATA_TOPIC));
    topic.partitions = vec![partition];
    let mut request = DescribeQuorumRequest::default();
    request.topics = vec![topic];
    let response: DescribeQuorumResponse = call(
        address,
        (
            ApiKey::DescribeQuorum,
            DESCRIBE_QUORUM_VERSION,
            counts::DESCRIBE_QUORUM_V2,
        ),
        &request,
        CALL_TIMEOUT,
    )
    .await?;
    check(
        address,
        response.error_code,
        response.error_message.as_ref(),
    )?;
    let partition = response
        .topics
        .iter()
        .flat_map(|t| &t.partitions)
        .find(|p| p.partition_index == 0)
        .ok_or_else(|| failed(address, "the answer names no metadata partition"))?;
    check(
        address,
        partition.error_code,
        partition.error_message.as_ref(),
    )?;
    let replica = |r: &kafka_protocol::messages::describe_quorum_response::ReplicaState| Replica {
        id: r.replica_id.0,
        directory_id: uuid_text(&r.replica_directory_id),
        log_end_offset: r.log_end_offset,
        last_fetch_ms: r.last_fetch_timestamp,
        last_caught_up_ms: r.last_caught_up_timestamp,
    };
    let endpoints = response
        .nodes
        .iter()
        .filter_map(|node| {
            let listener = node.listeners.first()?;
            Some((
                node.node_id.0,
                format!("{}:{}", listener.host, listener.port),
            ))
        })
        .collect();
    Ok(Quorum {
        address: address.to_owned(),
        leader_id: partition.leader_id.0,
        leader_epoch: partition.leader_epoch,
        high_watermark: partition.high_watermark,
        voters: partition.current_voters.iter().map(replica).collect(),
        observers: partition.observers.iter().map(replica).collect(),
        endpoints,
    })
}

/// AddRaftVoter at the leader `address`: `id` with `directory_id`, reached at `host:port`
/// on `listener`. Kafka refuses it until the new voter has caught up; it answers once the
/// change is committed.
pub async fn add_voter(
    address: &str,
    cluster_id: &str,
    id: i32,
    directory_id: &uuid::Uuid,
    listener: &str,
    host: &str,
    port: u16,
) -> Result<(), KraftError> {
    let mut endpoint = add_raft_voter_request::Listener::default();
    endpoint.name = StrBytes::from_string(listener.to_owned());
    endpoint.host = StrBytes::from_string(host.to_owned());
    endpoint.port = port;
    let mut request = AddRaftVoterRequest::default();
    request.cluster_id = Some(StrBytes::from_string(cluster_id.to_owned()));
    request.timeout_ms = (CHANGE_TIMEOUT.as_millis() as i32) - 5_000;
    request.voter_id = id;
    request.voter_directory_id = *directory_id;
    request.listeners = vec![endpoint];
    let response: AddRaftVoterResponse = call(
        address,
        (
            ApiKey::AddRaftVoter,
            RAFT_VOTER_VERSION,
            counts::VOTER_CHANGE_V0,
        ),
        &request,
        CHANGE_TIMEOUT,
    )
    .await?;
    check(
        address,
        response.error_code,
        response.error_message.as_ref(),
    )
}

/// RemoveRaftVoter at the leader `address`.
pub async fn remove_voter(
    address: &str,
    cluster_id: &str,
    id: i32,
    directory_id: &uuid::Uuid,
) -> Result<(), KraftError> {
    let mut request = RemoveRaftVoterRequest::default();
    request.cluster_id = Some(StrBytes::from_string(cluster_id.to_owned()));
    request.voter_id = id;
    request.voter_directory_id = *directory_id;
    let response: RemoveRaftVoterResponse = call(
        address,
        (
            ApiKey::RemoveRaftVoter,
            RAFT_VOTER_VERSION,
            counts::VOTER_CHANGE_V0,
        ),
        &request,
        CHANGE_TIMEOUT,
    )
    .await?;
    check(
        address,
        response.error_code,
        response.error_message.as_ref(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_ids_read_back_as_kafka_writes_them() {
        let uuid = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let text = uuid_text(&uuid);
        assert_eq!(text.len(), 22);
        assert_eq!(parse_uuid(&text), Some(uuid));
        assert_eq!(parse_uuid("not an id"), None);
    }

    /// A peer that answers `answer` to whatever it is sent.
    async fn peer(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let length = stream.read_u32().await.unwrap();
            let mut request = vec![0; length as usize];
            stream.read_exact(&mut request).await.unwrap();
            let _ = stream.write_all(&answer).await;
            let _ = stream.shutdown().await;
        });
        address
    }

    #[tokio::test]
    async fn a_peer_that_is_not_kafka_gets_a_clear_error_and_nothing_more_is_read() {
        // Claims a 2 GiB answer: refused unread.
        let huge = peer(0x7fff_ffffu32.to_be_bytes().to_vec()).await;
        let error = describe(&huge).await.unwrap_err().to_string();
        assert!(error.contains("larger than"), "{error}");
        // A short answer that is no Kafka response.
        let mut garbage = 3u32.to_be_bytes().to_vec();
        garbage.extend_from_slice(b"abc");
        let error = describe(&peer(garbage).await)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("not a Kafka answer"), "{error}");
        // A well-framed answer of 13 bytes whose topics array claims 2^32 - 2 entries: the
        // decoder would reserve room for all of them first (and abort the helper).
        let mut lying = 13u32.to_be_bytes().to_vec();
        lying.extend([0, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f]);
        let error = describe(&peer(lying).await).await.unwrap_err().to_string();
        assert!(
            error.contains("not a Kafka answer") && error.contains("entries where"),
            "{error}"
        );
        // Hangs up at once.
        let error = describe(&peer(Vec::new()).await).await.unwrap_err();
        assert!(matches!(error, KraftError::Connection { .. }), "{error}");
        // Nobody listens.
        let error = describe("127.0.0.1:1").await.unwrap_err();
        assert!(error.kafka_error().is_none(), "{error}");
    }
}
