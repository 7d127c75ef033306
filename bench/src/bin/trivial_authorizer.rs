//! The reference for the Apache benchmark (`bench/apache.sh`): a FastCGI authorizer that
//! reads each mod_authnz_fcgi request just far enough to find its end and always answers
//! `Status: 200` with a fixed user, the ceiling of the mod_authnz_fcgi mechanism.
//!
//! It runs the way `portcullis serve` runs its FastCGI listener: a tokio multi-thread
//! runtime with the default worker count, one task per connection.
//! Usage: `trivial_authorizer 127.0.0.1:PORT`.

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads records until the empty PARAMS record that ends the request; returns its id.
async fn read_request(conn: &mut tokio::net::TcpStream) -> std::io::Result<u16> {
    let mut body = vec![0u8; 0xffff + 0xff];
    loop {
        let mut h = [0u8; 8];
        conn.read_exact(&mut h).await?;
        let len = usize::from(u16::from_be_bytes([h[4], h[5]])) + usize::from(h[6]);
        conn.read_exact(&mut body[..len]).await?;
        if h[1] == 4 && h[4] == 0 && h[5] == 0 {
            return Ok(u16::from_be_bytes([h[2], h[3]]));
        }
    }
}

fn response(id: u16) -> Vec<u8> {
    let text = b"Status: 200\r\nVariable-PORTCULLIS_USER: bench\r\n\r\n";
    let [i0, i1] = id.to_be_bytes();
    let [l0, l1] = u16::try_from(text.len()).unwrap_or(0).to_be_bytes();
    let mut out = vec![1, 6, i0, i1, l0, l1, 0, 0];
    out.extend_from_slice(text);
    out.extend_from_slice(&[1, 6, i0, i1, 0, 0, 0, 0]);
    out.extend_from_slice(&[1, 3, i0, i1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    out
}

fn main() -> Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9093".to_string());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        loop {
            let (mut conn, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                if let Ok(id) = read_request(&mut conn).await {
                    let _ = conn.write_all(&response(id)).await;
                    let _ = conn.shutdown().await;
                }
            });
        }
    })
}
