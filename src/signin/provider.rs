//! The identity provider, through the `openidconnect` crate: discovery (on first use, so the
//! server starts while the provider is away), the authorization request (code flow, PKCE S256,
//! state, nonce), the code exchange (`client_secret_basic`, no redirects followed), and the
//! complete verification of the ID token: signature with the provider's JWKS (fetched again
//! when a token names an unknown `kid`, at most once a minute), issuer, audience, nonce,
//! expiry, and asymmetric algorithms only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreGenderClaim, CoreIdTokenVerifier, CoreJsonWebKeySet,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AdditionalClaims, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl, JsonWebKeySetUrl, Nonce,
    OAuth2TokenResponse as _, PkceCodeChallenge, PkceCodeVerifier, ProviderMetadataWithLogout,
    RedirectUrl, Scope, SignatureVerificationError, TokenResponse as _,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex, RwLock};
use url::Url;

use super::mapping::{OrgSource, RoleMap, Unmapped, map_claims};
use super::pending::PendingLogin;
use crate::incident::identity::Role;
use crate::incident::people::PersonClaims;

/// What `--oidc-*` configure.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub scopes: Vec<String>,
    pub organization: OrgSource,
    pub role_claim: String,
    pub role_map: RoleMap,
    /// `{public-url}/auth/callback`
    pub redirect_uri: Url,
    /// `{public-url}/`: where the provider sends people back after signing out.
    pub after_logout: Url,
}

/// Why a sign-in failed: the reason the sign-in page shows (`signin_error=<reason>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The callback's `state` is not the one this browser's login started with (or the login
    /// expired, or its cookie was altered).
    State,
    /// The provider answered the authorization request with an error (e.g. the person said no).
    Denied,
    /// The provider could not be reached, or its discovery document is unusable.
    Unavailable,
    /// The token endpoint refused the code: replayed, issued to another client or another
    /// login, or the PKCE verifier does not match.
    CodeRejected,
    NoIdToken,
    Signature,
    Issuer,
    Audience,
    Nonce,
    Expired,
    InvalidToken,
    NoOrganization,
    NoRole,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::State => "state_mismatch",
            Refusal::Denied => "provider_denied",
            Refusal::Unavailable => "provider_unavailable",
            Refusal::CodeRejected => "code_rejected",
            Refusal::NoIdToken => "id_token_missing",
            Refusal::Signature => "id_token_signature",
            Refusal::Issuer => "id_token_issuer",
            Refusal::Audience => "id_token_audience",
            Refusal::Nonce => "id_token_nonce",
            Refusal::Expired => "id_token_expired",
            Refusal::InvalidToken => "id_token_invalid",
            Refusal::NoOrganization => "no_organization",
            Refusal::NoRole => "no_role",
        }
    }
}

/// Who signed in, and as what here.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub org_id: uuid::Uuid,
    pub role: Role,
    pub person: PersonClaims,
}

/// Every claim besides the standard ones (the organization and role claims among them).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    rest: Map<String, Value>,
}
impl AdditionalClaims for ExtraClaims {}

type IdToken = openidconnect::IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;

type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery found.
struct Discovered {
    client: Client,
    issuer: IssuerUrl,
    jwks_uri: JsonWebKeySetUrl,
    jwks: RwLock<CoreJsonWebKeySet>,
    /// When an unknown `kid` last made us fetch the JWKS.
    refetched: Mutex<Option<Instant>>,
    end_session: Option<Url>,
}

pub struct Provider {
    settings: OidcSettings,
    http: reqwest::Client,
    discovered: Mutex<Option<Arc<Discovered>>>,
}

/// The least time between two JWKS fetches that unknown `kid`s cause.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

impl Provider {
    pub fn new(settings: OidcSettings) -> anyhow::Result<Provider> {
        IssuerUrl::new(settings.issuer.clone())
            .map_err(|e| anyhow::anyhow!("--oidc-issuer is not a URL: {e}"))?;
        let http = reqwest::Client::builder()
            // A token endpoint that redirects could bounce the code (and our secret) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Provider {
            settings,
            http,
            discovered: Mutex::new(None),
        })
    }

    /// The provider's host, what the sign-in button names.
    pub fn name(&self) -> String {
        Url::parse(&self.settings.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| self.settings.issuer.clone())
    }

    async fn discovered(&self) -> Result<Arc<Discovered>, Refusal> {
        let mut slot = self.discovered.lock().await;
        if let Some(found) = slot.as_ref() {
            return Ok(found.clone());
        }
        let issuer =
            IssuerUrl::new(self.settings.issuer.clone()).map_err(|_| Refusal::Unavailable)?;
        let metadata = ProviderMetadataWithLogout::discover_async(issuer.clone(), &self.http)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "OpenID Connect discovery failed");
                Refusal::Unavailable
            })?;
        let jwks = metadata.jwks().clone();
        let jwks_uri = metadata.jwks_uri().clone();
        let end_session = metadata
            .additional_metadata()
            .end_session_endpoint
            .as_ref()
            .map(|u| u.url().clone());
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(
                self.settings.client_secret.expose_secret().to_string(),
            )),
        )
        .set_redirect_uri(RedirectUrl::from_url(self.settings.redirect_uri.clone()));
        let found = Arc::new(Discovered {
            client,
            issuer,
            jwks_uri,
            jwks: RwLock::new(jwks),
            refetched: Mutex::new(None),
            end_session,
        });
        *slot = Some(found.clone());
        Ok(found)
    }

    /// The provider's authorization URL for a new login, and what the browser keeps of it.
    pub async fn begin(&self, next: String, now: u64) -> Result<(Url, PendingLogin), Refusal> {
        let found = self.discovered().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = found.client.authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        );
        for scope in &self.settings.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.set_pkce_challenge(challenge).url();
        Ok((
            url,
            PendingLogin {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                next,
                expires: now + super::pending::LIFETIME_SECS,
            },
        ))
    }

    /// Redeems the code and verifies the ID token; then maps its claims.
    pub async fn finish(&self, login: &PendingLogin, code: &str) -> Result<SignedIn, Refusal> {
        let found = self.discovered().await?;
        let response = found
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|_| Refusal::Unavailable)?
            .set_pkce_verifier(PkceCodeVerifier::new(login.verifier.clone()))
            .request_async(&self.http)
            .await
            .map_err(|e| {
                tracing::info!(error = %e, "the token endpoint refused the code");
                Refusal::CodeRejected
            })?;
        let _ = response.access_token();
        let raw = response.id_token().ok_or(Refusal::NoIdToken)?.to_string();
        let token: IdToken = raw.parse().map_err(|_| Refusal::InvalidToken)?;
        let nonce = Nonce::new(login.nonce.clone());
        let claims = match self.verify(&found, &token, &nonce).await {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.refetch_jwks(&found).await => self.verify(&found, &token, &nonce).await,
            other => other,
        }
        .map_err(|e| {
            tracing::info!(error = %e, "ID token refused");
            refusal(&e)
        })?;
        let (org_id, role) = map_claims(
            &claims.additional_claims().rest,
            &self.settings.organization,
            &self.settings.role_claim,
            &self.settings.role_map,
        )
        .map_err(|why| match why {
            Unmapped::NoOrganization => Refusal::NoOrganization,
            Unmapped::NoRole => Refusal::NoRole,
        })?;
        let name = claims
            .name()
            .and_then(|n| n.get(None))
            .map(|n| n.as_str().to_string());
        let email = claims.email().map(|e| e.as_str().to_string());
        let person = PersonClaims::signed_in(
            found.issuer.as_str(),
            claims.subject().as_str(),
            name,
            email,
        );
        Ok(SignedIn {
            org_id,
            role,
            person,
        })
    }

    async fn verify(
        &self,
        found: &Discovered,
        token: &IdToken,
        nonce: &Nonce,
    ) -> Result<openidconnect::IdTokenClaims<ExtraClaims, CoreGenderClaim>, ClaimsVerificationError>
    {
        use CoreJwsSigningAlgorithm as A;
        let keys = found.jwks.read().await.clone();
        // Public-key algorithms only: HS256 would make the client secret a signing key, and
        // `none` signs nothing.
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.settings.client_id.clone()),
            found.issuer.clone(),
            keys,
        )
        .set_allowed_algs([
            A::RsaSsaPkcs1V15Sha256,
            A::RsaSsaPkcs1V15Sha384,
            A::RsaSsaPkcs1V15Sha512,
            A::RsaSsaPssSha256,
            A::RsaSsaPssSha384,
            A::RsaSsaPssSha512,
            A::EcdsaP256Sha256,
            A::EcdsaP384Sha384,
            A::EdDsa,
        ]);
        token.claims(&verifier, nonce).cloned()
    }

    /// Fetches the JWKS again, unless an unknown `kid` already did so within the last minute.
    /// Whether the keys were fetched.
    async fn refetch_jwks(&self, found: &Discovered) -> bool {
        let mut last = found.refetched.lock().await;
        if last.is_some_and(|at| at.elapsed() < JWKS_REFETCH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match CoreJsonWebKeySet::fetch_async(&found.jwks_uri, &self.http).await {
            Ok(keys) => {
                *found.jwks.write().await = keys;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the provider's JWKS failed");
                false
            }
        }
    }

    /// Where signing out sends the browser: the provider's `end_session_endpoint` (with our
    /// client and the way back), or `/` (also when the provider cannot be reached: the session
    /// has ended here either way).
    pub async fn logout_url(&self) -> String {
        let found = self.discovered().await.ok();
        match found.and_then(|f| f.end_session.clone()) {
            Some(mut url) => {
                url.query_pairs_mut()
                    .append_pair("client_id", &self.settings.client_id)
                    .append_pair(
                        "post_logout_redirect_uri",
                        self.settings.after_logout.as_str(),
                    );
                url.to_string()
            }
            None => "/".into(),
        }
    }
}

fn refusal(error: &ClaimsVerificationError) -> Refusal {
    match error {
        ClaimsVerificationError::Expired(_) => Refusal::Expired,
        ClaimsVerificationError::InvalidAudience(_) => Refusal::Audience,
        ClaimsVerificationError::InvalidIssuer(_) => Refusal::Issuer,
        ClaimsVerificationError::InvalidNonce(_) => Refusal::Nonce,
        ClaimsVerificationError::SignatureVerification(_) => Refusal::Signature,
        _ => Refusal::InvalidToken,
    }
}
