//! The client's reading of every kind of answer: done, rate limited with Retry-After,
//! retryable, permanent with Huggy's reason, bad token, ambiguous, undecodable; and what it
//! sends. A few cases need answers the fake does not give (a dropped connection, a plain
//! text 200): a one-shot raw HTTP server stands in for Huggy there.

use std::time::Duration;

use tarefas_fake_huggy::Faults;
use tarefas_huggy::model::situation;
use tarefas_huggy::{HttpHuggy, HuggyApi, HuggyConfig, HuggyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::support::{empty, seed_chat, start};

/// A raw HTTP/1.1 answer with a correct content-length.
fn answer(status_line: &str, body: &str) -> String {
    format!("HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len())
}

/// Serves one connection: reads one request and answers `response` raw (nothing: the
/// connection is dropped). Returns the base URL and the request as received.
async fn one_shot(response: String) -> (String, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = socket.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let length = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length || n == 0 {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        if !response.is_empty() {
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.ok();
        }
        String::from_utf8_lossy(&buf).to_string()
    });
    (base, task)
}

fn client(base: &str) -> HttpHuggy {
    HttpHuggy::new(
        HuggyConfig::new("s3cr3t")
            .with_base_url(base)
            .with_timeouts(Duration::from_secs(1), Duration::from_secs(3)),
    )
    .unwrap()
}

#[tokio::test]
async fn done() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::AUTO);
    assert_eq!(client.put_in_queue(2).await, Ok(()));
    assert_eq!(client.get_contact(1).await.unwrap().id, 1);
}

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let (fake, client) = start(empty()).await;
    fake.set_faults(Faults {
        rate_429: 1.0,
        retry_after_secs: Some(12),
        ..Faults::default()
    })
    .unwrap();
    let err = client.list_chats(0, None).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    assert!(err.is_retryable());
}

#[tokio::test]
async fn retryable_server_error_and_refused_connection() {
    let (fake, client) = start(empty()).await;
    fake.set_faults(Faults {
        rate_5xx: 1.0,
        ..Faults::default()
    })
    .unwrap();
    assert!(matches!(
        client.list_contacts(0).await.unwrap_err(),
        HuggyError::Retryable { .. }
    ));

    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = self::client(&format!("http://127.0.0.1:{port}"));
    let err = refused.transfer_to_agent(1, 1).await.unwrap_err();
    assert!(
        matches!(err, HuggyError::Retryable { .. }),
        "nothing was sent: {err:?}"
    );
}

#[tokio::test]
async fn permanent_with_huggys_reason() {
    let (fake, client) = start(empty()).await;
    seed_chat(&fake, 1, 2, situation::CLOSED);
    assert_eq!(
        client.get_chat(3).await.unwrap_err(),
        HuggyError::Permanent {
            status: 404,
            reason: "Chat not found".into()
        }
    );
    assert_eq!(
        client.transfer_to_agent(2, 1).await.unwrap_err(),
        HuggyError::Permanent {
            status: 422,
            reason: "Chat is closed".into()
        }
    );
    let (base, _server) = one_shot(answer(
        "400 Bad Request",
        r#"{"message":"flowId inválido"}"#,
    ))
    .await;
    assert_eq!(
        self::client(&base).update_workflow(2, 1).await.unwrap_err(),
        HuggyError::Permanent {
            status: 400,
            reason: "flowId inválido".into()
        }
    );
}

#[tokio::test]
async fn bad_token() {
    let (fake, _) = start(empty()).await;
    let wrong = HttpHuggy::new(HuggyConfig::new("wrong").with_base_url(fake.base_url())).unwrap();
    assert_eq!(
        wrong.reopen_chat(2).await.unwrap_err(),
        HuggyError::BadToken { status: 401 }
    );
}

#[tokio::test]
async fn ambiguous_when_the_connection_drops_after_sending() {
    let (base, server) = one_shot(String::new()).await;
    let err = client(&base)
        .close_chat(9, Some("4".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, HuggyError::Ambiguous { .. }), "{err:?}");
    let request = server.await.unwrap();
    assert!(
        request.starts_with("PUT /chats/9/close HTTP/1.1"),
        "{request}"
    );
}

#[tokio::test]
async fn decode_error_on_an_unreadable_2xx() {
    let (base, _server) = one_shot(answer("200 OK", "not json")).await;
    let err = client(&base).list_contacts(0).await.unwrap_err();
    assert!(
        matches!(&err, HuggyError::Decode { reason } if reason.starts_with("list_contacts")),
        "{err:?}"
    );
    // Actions do not read their answer: any 2xx is done.
    let (base, _server) = one_shot(answer("200 OK", "not json")).await;
    assert_eq!(client(&base).put_in_queue(1).await, Ok(()));
}

#[tokio::test]
async fn every_request_carries_the_contract_headers() {
    let (base, server) = one_shot(answer("200 OK", "[]")).await;
    client(&base).list_chats(3, Some("in_chat")).await.unwrap();
    let get = server.await.unwrap().to_ascii_lowercase();
    assert!(
        get.starts_with("get /chats?page=3&situation=in_chat http/1.1\r\n"),
        "{get}"
    );
    for header in [
        "authorization: bearer s3cr3t",
        "accept: application/json",
        "content-type: application/json",
    ] {
        assert!(get.contains(header), "{header} in {get}");
    }

    let (base, server) = one_shot(answer("200 OK", "{}")).await;
    let prefixed = HttpHuggy::new(
        HuggyConfig::new("s3cr3t")
            .with_base_url(format!("{base}/v3"))
            .with_company_id("12"),
    )
    .unwrap();
    prefixed.change_department(44, 3).await.unwrap();
    let put = server.await.unwrap();
    assert!(
        put.starts_with("PUT /v3/companies/12/chats/44/department HTTP/1.1\r\n"),
        "{put}"
    );
    assert!(put
        .to_ascii_lowercase()
        .contains("content-type: application/json"));
    assert!(put.ends_with("\r\n\r\n{\"departmentId\":3}"), "{put}");
}
