//! Answers the helper reads from members and hooks, bounded: a peer (or anything that took
//! its address) could otherwise send bytes until the helper's 64 MiB limit kills it, well
//! within a call's timeout on a fast network.

/// The most of an error answer the helper reads: enough for any message it shows.
pub const MAX_ERROR_BYTES: usize = 16 * 1024;

/// An answer's body, refused once it grows beyond `limit` bytes.
pub async fn read_bounded(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err(format!("the answer is larger than {limit} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
