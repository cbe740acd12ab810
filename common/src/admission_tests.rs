//! Unit tests of admission: both token forms, rotation, expiry with skew, forged tokens,
//! tokens for another stream or app, `*`, malformed queries, the cluster credential, and
//! constant-time comparison of every signature.

use super::*;

const NOW: u64 = 1_700_000_000;

fn keys(specs: &[&str]) -> Keys {
    Keys::new(
        specs
            .iter()
            .map(|s| parse_app_key(s).expect("key"))
            .collect(),
    )
}

fn node(publish: &[&str], play: &[&str], secret: Option<&str>) -> Admission {
    Admission {
        publish: keys(publish),
        play: keys(play),
        cluster_secret: secret.map(|s| Secret(s.into())),
        clock_skew_s: 30,
    }
}

fn ask<'a>(action: Action, app: &'a str, name: &'a str, query: &'a str) -> Ask<'a> {
    Ask {
        action,
        protocol: "rtmp",
        app,
        name,
        query,
        peer: "127.0.0.1:5000",
    }
}

fn play(a: &Admission, app: &str, name: &str, query: &str, now: u64) -> Result<Grant, Denial> {
    a.check(&ask(Action::Play, app, name, query), now)
}

fn publish(a: &Admission, app: &str, name: &str, query: &str, now: u64) -> Result<Grant, Denial> {
    a.check(&ask(Action::Publish, app, name, query), now)
}

#[test]
fn without_keys_everything_is_open() {
    let a = Admission::default();
    assert_eq!(publish(&a, "live", "x", "", NOW), Ok(Grant::Open));
    assert_eq!(play(&a, "live", "x", "sign=zz", NOW), Ok(Grant::Open));
    assert_eq!(
        OPEN.check(&ask(Action::Play, "a", "b", ""), NOW),
        Ok(Grant::Open)
    );
    // Publish keys do not turn play auth on, nor the reverse.
    let a = node(&["live=k"], &[], None);
    assert_eq!(play(&a, "live", "x", "", NOW), Ok(Grant::Open));
    assert_eq!(publish(&a, "live", "x", "", NOW), Err(Denial::Missing));
    let a = node(&[], &["live=k"], None);
    assert_eq!(publish(&a, "live", "x", "", NOW), Ok(Grant::Open));
}

#[test]
fn hmac_token_admits_its_stream_until_expiry_plus_skew() {
    let a = node(&["live=secret"], &["live=secret"], None);
    let q = sign_hmac("secret", "live", "demo", NOW + 60);
    assert!(q.starts_with(&format!("expires={}&sign=", NOW + 60)), "{q}");
    assert_eq!(publish(&a, "live", "demo", &q, NOW), Ok(Grant::Token));
    assert_eq!(play(&a, "live", "demo", &q, NOW), Ok(Grant::Token));
    // Other query fields around it do not matter; upper-case hex is fine.
    let noisy = format!(
        "a=1&{}&_HLS_msn=3",
        q.to_uppercase()
            .replace("EXPIRES=", "expires=")
            .replace("&SIGN=", "&sign=")
    );
    assert_eq!(play(&a, "live", "demo", &noisy, NOW), Ok(Grant::Token));
    // Expiry: valid through expires + skew, refused one second later.
    assert_eq!(play(&a, "live", "demo", &q, NOW + 90), Ok(Grant::Token));
    assert_eq!(play(&a, "live", "demo", &q, NOW + 91), Err(Denial::Expired));
    assert_eq!(Denial::Expired.http_status(), 403);
    let strict = Admission {
        clock_skew_s: 0,
        ..a.clone()
    };
    assert_eq!(
        play(&strict, "live", "demo", &q, NOW + 61),
        Err(Denial::Expired)
    );
}

#[test]
fn tencent_token_is_md5_of_key_name_and_hex_time() {
    // echo -n 'mykeydemo5C2ACC4F' | md5sum
    let q = sign_tencent("mykey", "demo", 0x5C2A_CC4F);
    assert_eq!(
        q,
        "txSecret=efd0cef8aab12fd568af9117a63e9f14&txTime=5C2ACC4F"
    );
    let a = node(&["live=mykey"], &["live=mykey"], None);
    let then = 0x5C2A_CC4F - 100;
    assert_eq!(publish(&a, "live", "demo", &q, then), Ok(Grant::Token));
    // Lower-case txTime is another string, so another digest: sign what you send.
    let lower = "txSecret=efd0cef8aab12fd568af9117a63e9f14&txTime=5c2acc4f";
    assert_eq!(
        publish(&a, "live", "demo", lower, then),
        Err(Denial::Forged)
    );
    // Upper-case txSecret is the same digest.
    let upper = "txSecret=EFD0CEF8AAB12FD568AF9117A63E9F14&txTime=5C2ACC4F";
    assert_eq!(publish(&a, "live", "demo", upper, then), Ok(Grant::Token));
    assert_eq!(
        publish(&a, "live", "demo", &q, 0x5C2A_CC4F + 31),
        Err(Denial::Expired)
    );
    // The stream name is signed, the app is not (Tencent's form): another name is forged.
    assert_eq!(publish(&a, "live", "other", &q, then), Err(Denial::Forged));
}

#[test]
fn any_key_of_the_app_admits_during_rotation() {
    let a = node(&["live=old", "live=new"], &["live=old", "live=new"], None);
    for key in ["old", "new"] {
        let h = sign_hmac(key, "live", "cam", NOW + 600);
        assert_eq!(
            publish(&a, "live", "cam", &h, NOW),
            Ok(Grant::Token),
            "{key}"
        );
        let t = sign_tencent(key, "cam", NOW + 600);
        assert_eq!(play(&a, "live", "cam", &t, NOW), Ok(Grant::Token), "{key}");
    }
    // A retired key no longer admits.
    let h = sign_hmac("retired", "live", "cam", NOW + 600);
    assert_eq!(publish(&a, "live", "cam", &h, NOW), Err(Denial::Forged));
}

#[test]
fn forged_and_other_stream_tokens_are_refused() {
    let a = node(&["live=k"], &["live=k"], None);
    let q = sign_hmac("k", "live", "demo", NOW + 60);
    // One hex digit changed.
    let mut forged = q.clone().into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).expect("ascii");
    assert_eq!(play(&a, "live", "demo", &forged, NOW), Err(Denial::Forged));
    // A later expiry than signed.
    let stretched = q.replace(
        &format!("expires={}", NOW + 60),
        &format!("expires={}", NOW + 6000),
    );
    assert_eq!(
        play(&a, "live", "demo", &stretched, NOW),
        Err(Denial::Forged)
    );
    // Made for another stream.
    assert_eq!(play(&a, "live", "other", &q, NOW), Err(Denial::Forged));
    assert_eq!(Denial::Forged.http_status(), 403);
    assert_eq!(Denial::Forged.reason(), "forbidden");
    // A forged token that is also past its expiry says forged, not expired.
    assert_eq!(
        play(&a, "live", "demo", &forged, NOW + 1000),
        Err(Denial::Forged)
    );
}

#[test]
fn keys_are_per_app_and_star_covers_every_app() {
    let a = node(&["live=k1", "vip=k2"], &[], None);
    let q = sign_hmac("k1", "live", "demo", NOW + 60);
    assert_eq!(publish(&a, "live", "demo", &q, NOW), Ok(Grant::Token));
    // Same name, other app: live's key does not sign for vip.
    assert_eq!(publish(&a, "vip", "demo", &q, NOW), Err(Denial::Forged));
    let t = sign_tencent("k1", "demo", NOW + 60);
    assert_eq!(publish(&a, "vip", "demo", &t, NOW), Err(Denial::Forged));
    // An app without any key is refused (auth on fails closed).
    let none = publish(&a, "free", "demo", &q, NOW);
    assert_eq!(none, Err(Denial::NoKey("free".into())));
    assert_eq!(Denial::NoKey("free".into()).http_status(), 403);

    let star = node(&["*=any", "live=k1"], &[], None);
    let s = sign_hmac("any", "free", "demo", NOW + 60);
    assert_eq!(publish(&star, "free", "demo", &s, NOW), Ok(Grant::Token));
    let s = sign_hmac("any", "live", "demo", NOW + 60);
    assert_eq!(publish(&star, "live", "demo", &s, NOW), Ok(Grant::Token));
    // The HMAC form signs the app: a `*` token for one app does not open another.
    assert_eq!(publish(&star, "free", "demo", &s, NOW), Err(Denial::Forged));
}

#[test]
fn missing_and_malformed_tokens_are_unauthorized() {
    let a = node(&["live=k"], &["live=k"], Some("s"));
    let cases = [
        ("", Denial::Missing),
        ("token=abc&x", Denial::Missing),
        ("sign=00", Denial::Malformed("expires and sign go together")),
        (
            "expires=1",
            Denial::Malformed("expires and sign go together"),
        ),
        (
            "expires=soon&sign=00",
            Denial::Malformed("expires is not Unix seconds"),
        ),
        (
            "expires=-1&sign=00",
            Denial::Malformed("expires is not Unix seconds"),
        ),
        (
            "expires=1&sign=abc",
            Denial::Malformed("sign is not 64 hex digits"),
        ),
        (
            "txSecret=abc",
            Denial::Malformed("txSecret and txTime go together"),
        ),
        (
            "txSecret=00&txTime=zz",
            Denial::Malformed("txTime is not hex Unix seconds"),
        ),
        (
            "txSecret=00&txTime=5C2ACC4F",
            Denial::Malformed("txSecret is not 32 hex digits"),
        ),
        (
            "txTime=11112222333344445555&txSecret=00",
            Denial::Malformed("txTime is not hex Unix seconds"),
        ),
        (
            "sign=1&sign=2",
            Denial::Malformed("a token field is repeated"),
        ),
        (
            "cluster_sign=00",
            Denial::Malformed("cluster_expires and cluster_sign go together"),
        ),
    ];
    for (q, want) in cases {
        let got = play(&a, "live", "demo", q, NOW);
        assert_eq!(got, Err(want.clone()), "query {q:?}");
        assert_eq!(want.http_status(), 401, "{q:?}");
        assert_eq!(want.reason(), "unauthorized");
    }
    // A valid token next to a broken one of the other form still admits.
    let good = sign_hmac("k", "live", "demo", NOW + 60);
    let mixed = format!("txSecret=zz&txTime=1&{good}");
    assert_eq!(play(&a, "live", "demo", &mixed, NOW), Ok(Grant::Token));
    // A repeated field with the same value is not ambiguous.
    let twice = format!("{good}&{good}");
    assert_eq!(play(&a, "live", "demo", &twice, NOW), Ok(Grant::Token));
}

#[test]
fn cluster_credential_admits_plays_only_with_the_same_secret() {
    let a = node(&["live=k"], &["live=k"], Some("cluster-s3cret"));
    let c = sign_cluster("cluster-s3cret", "live", "demo", NOW + 60);
    assert!(c.starts_with("cluster_expires="), "{c}");
    assert_eq!(play(&a, "live", "demo", &c, NOW), Ok(Grant::Cluster));
    // Also for apps no viewer key covers: edges pull whatever their viewers may watch.
    let other = sign_cluster("cluster-s3cret", "any", "demo", NOW + 60);
    assert_eq!(play(&a, "any", "demo", &other, NOW), Ok(Grant::Cluster));
    // Never a publish.
    assert_eq!(publish(&a, "live", "demo", &c, NOW), Err(Denial::Missing));
    // Another secret, another stream, or too late.
    let wrong = sign_cluster("guess", "live", "demo", NOW + 60);
    assert_eq!(play(&a, "live", "demo", &wrong, NOW), Err(Denial::Forged));
    assert_eq!(play(&a, "live", "x", &c, NOW), Err(Denial::Forged));
    assert_eq!(play(&a, "live", "demo", &c, NOW + 91), Err(Denial::Expired));
    // A viewer token made with the cluster secret as a play key is not a cluster credential.
    let h = sign_hmac("cluster-s3cret", "live", "demo", NOW + 60);
    assert_eq!(play(&a, "live", "demo", &h, NOW), Err(Denial::Forged));
    // A node without the secret ignores the credential.
    let plain = node(&[], &["live=k"], None);
    assert_eq!(play(&plain, "live", "demo", &c, NOW), Err(Denial::Missing));
}

#[test]
fn every_key_is_compared_in_constant_time() {
    let a = node(&["live=one", "live=two", "other=three"], &[], None);
    let count = |q: &str| {
        CT_COMPARES.with(|c| c.set(0));
        let r = publish(&a, "live", "demo", q, NOW);
        (r, CT_COMPARES.with(|c| c.get()))
    };
    // The first key matches; the second is still compared (time does not tell which).
    let h = sign_hmac("one", "live", "demo", NOW + 60);
    assert_eq!(count(&h), (Ok(Grant::Token), 2));
    let t = sign_tencent("two", "demo", NOW + 60);
    assert_eq!(count(&t), (Ok(Grant::Token), 2));
    let forged = sign_hmac("nope", "live", "demo", NOW + 60);
    assert_eq!(count(&forged), (Err(Denial::Forged), 2));
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"abcd"));
}

#[test]
fn app_keys_parse_and_never_print_their_secret() {
    let k = parse_app_key("live=s=e=cret").expect("key");
    assert_eq!((k.app.as_str(), k.key.0.as_str()), ("live", "s=e=cret"));
    assert_eq!(format!("{k:?}"), "\"live=***\"");
    assert!(parse_app_key("*=x").is_ok());
    for bad in ["live", "=k", "live=", "a/b=k"] {
        assert!(parse_app_key(bad).is_err(), "{bad}");
    }
    assert!(parse_secret("").is_err());
    assert_eq!(
        format!("{:?}", parse_secret("hush").expect("secret")),
        "\"***\""
    );
    let a = node(&["live=topsecret"], &[], Some("clustersecret"));
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("topsecret") && !shown.contains("clustersecret"),
        "{shown}"
    );
}

#[test]
fn names_are_validated_before_anything_else() {
    for (app, name) in [
        ("live", "cam"),
        ("live", "cam-1_b.hd~2"),
        ("a", "b"),
        ("LIVE", "Cam.v2"),
        (&*"a".repeat(MAX_APP_LEN), &*"n".repeat(MAX_NAME_LEN)),
    ] {
        assert_eq!(validate_name(app, name), Ok(()), "{app}/{name}");
    }
    let bad: &[(&str, &str)] = &[
        ("", "cam"),
        ("live", ""),
        ("live", "b/c"),
        ("a/b", "c"),
        ("live", ".."),
        ("..", "cam"),
        ("live", ".hidden"),
        ("live", "cam\n"),
        ("live", "cam\0"),
        ("live", "c am"),
        ("live", "c%2Fam"),
        ("live", "cam?x"),
        ("live", "cam=1"),
        ("live", "cäm"),
        ("live", "cam\\x"),
    ];
    for (app, name) in bad {
        assert!(validate_name(app, name).is_err(), "{app:?}/{name:?}");
    }
    assert!(matches!(
        validate_name(&"a".repeat(MAX_APP_LEN + 1), "cam"),
        Err(BadName::TooLong { .. })
    ));
    assert!(matches!(
        validate_name("live", &"n".repeat(MAX_NAME_LEN + 1)),
        Err(BadName::TooLong { .. })
    ));
    // `a` + `b/c` and `a/b` + `c` would both be the key `a/b/c`: neither is accepted, so
    // no two accepted (app, name) pairs share a key.
    assert!(validate_name("a", "b/c").is_err() && validate_name("a/b", "c").is_err());
}
