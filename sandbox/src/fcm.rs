//! A fake FCM HTTP v1 server for the tests: an OAuth2 token endpoint that checks the service account's RS256
//! assertion against its public key, and `POST /v1/projects/{project}/messages:send` that checks the bearer token
//! it issued and the message body. Device tokens starting with `unregistered-` are answered like FCM answers a
//! token that is no longer registered (404, `UNREGISTERED`).

use std::sync::{Arc, Mutex};

use poem::{
    handler,
    http::StatusCode,
    web::{Data, Form, Json, Path},
    EndpointExt, IntoResponse, Request, Response, Route,
};
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Clone)]
pub struct FakeFcm {
    inner: Arc<Inner>,
}

struct Inner {
    public_key_pem: String,
    project_id: String,
    issued: Mutex<Vec<String>>,
    messages: Mutex<Vec<Value>>,
    /// Requests refused (a bad assertion, a bad bearer, a bad body).
    refused: Mutex<Vec<String>>,
}

impl FakeFcm {
    pub fn new(public_key_pem: &str, project_id: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                public_key_pem: public_key_pem.to_owned(),
                project_id: project_id.to_owned(),
                issued: Mutex::new(Vec::new()),
                messages: Mutex::new(Vec::new()),
                refused: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Messages accepted (each the request body).
    pub fn messages(&self) -> Vec<Value> {
        self.inner
            .messages
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    pub fn refused(&self) -> Vec<String> {
        self.inner
            .refused
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    fn refuse(&self, why: &str) {
        if let Ok(mut refused) = self.inner.refused.lock() {
            refused.push(why.to_owned());
        }
    }

    pub fn routes(&self) -> impl poem::Endpoint {
        Route::new()
            .at("/token", poem::post(token))
            .at("/v1/projects/:project/*action", poem::post(send))
            .data(self.clone())
    }

    /// Starts on a free port; returns it and its base URL.
    pub async fn start(public_key_pem: &str, project_id: &str) -> anyhow::Result<(Self, String)> {
        use poem::listener::{Acceptor, Listener, TcpListener};
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let address = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .ok_or_else(|| anyhow::anyhow!("no address"))?;
        let fake = Self::new(public_key_pem, project_id);
        let app = fake.routes();
        tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok((fake, format!("http://{address}")))
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

#[derive(Deserialize)]
struct Assertion {
    iss: String,
    scope: String,
}

#[handler]
fn token(Data(fake): Data<&FakeFcm>, form: poem::Result<Form<TokenForm>>) -> Response {
    let Ok(Form(form)) = form else {
        fake.refuse("token: not a form");
        return StatusCode::BAD_REQUEST.into_response();
    };
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        fake.refuse("token: wrong grant type");
        return Json(json!({"error": "unsupported_grant_type"}))
            .with_status(StatusCode::BAD_REQUEST)
            .into_response();
    }
    let Ok(key) = jsonwebtoken::DecodingKey::from_rsa_pem(fake.inner.public_key_pem.as_bytes())
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_aud = false;
    match jsonwebtoken::decode::<Assertion>(&form.assertion, &key, &validation) {
        Ok(data)
            if data.claims.scope.contains("firebase.messaging")
                && data.claims.iss.contains('@') =>
        {
            let token = format!("ya29.fake-{}", uuid::Uuid::new_v4().simple());
            if let Ok(mut issued) = fake.inner.issued.lock() {
                issued.push(token.clone());
            }
            Json(json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"}))
                .into_response()
        }
        _ => {
            fake.refuse("token: invalid assertion");
            Json(json!({"error": "invalid_grant"}))
                .with_status(StatusCode::BAD_REQUEST)
                .into_response()
        }
    }
}

fn fcm_error(status: StatusCode, code: &str, error_code: Option<&str>) -> Response {
    let details = error_code
        .map(|c| json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}]))
        .unwrap_or(json!([]));
    Json(json!({"error": {"code": status.as_u16(), "message": code, "status": code, "details": details}}))
        .with_status(status)
        .into_response()
}

#[handler]
fn send(
    Data(fake): Data<&FakeFcm>,
    request: &Request,
    Path((project, action)): Path<(String, String)>,
    body: poem::Result<Json<Value>>,
) -> Response {
    // `messages:send` (a literal colon, so not a route pattern).
    if action != "messages:send" {
        return fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", None);
    }
    let bearer = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .unwrap_or_default()
        .to_owned();
    let known = fake
        .inner
        .issued
        .lock()
        .map(|i| i.contains(&bearer))
        .unwrap_or(false);
    if !known {
        fake.refuse("send: unknown bearer");
        return fcm_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", None);
    }
    if project != fake.inner.project_id {
        fake.refuse("send: wrong project");
        return fcm_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", None);
    }
    let Ok(Json(body)) = body else {
        fake.refuse("send: body is not JSON");
        return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", None);
    };
    let message = &body["message"];
    let device_token = message["token"].as_str().unwrap_or_default();
    let well_formed = !device_token.is_empty()
        && message["notification"]["title"].is_string()
        && message["notification"]["body"].is_string()
        && message["data"]
            .as_object()
            .is_none_or(|d| d.values().all(Value::is_string));
    if !well_formed {
        fake.refuse("send: malformed message");
        return fcm_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", None);
    }
    if device_token.starts_with("unregistered-") {
        return fcm_error(StatusCode::NOT_FOUND, "NOT_FOUND", Some("UNREGISTERED"));
    }
    if let Ok(mut messages) = fake.inner.messages.lock() {
        messages.push(body.clone());
    }
    Json(json!({"name": format!("projects/{project}/messages/{}", uuid::Uuid::new_v4().simple())}))
        .into_response()
}
