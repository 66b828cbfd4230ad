//! The authorizer's specification, as tables: each row is a set of ACLs, a request and the
//! answer Kafka's StandardAuthorizer gives it.

use super::*;
use Operation::*;
use PatternType::*;
use Permission::*;
use ResourceType::*;

/// An ACL written as a row: `(type, name, pattern, principal, host, operation, permission)`.
type Row = (
    ResourceType,
    &'static str,
    PatternType,
    &'static str,
    &'static str,
    Operation,
    Permission,
);

fn acl(r: Row) -> Acl {
    Acl {
        resource_type: r.0,
        resource_name: r.1.into(),
        pattern_type: r.2,
        principal: r.3.into(),
        host: r.4.into(),
        operation: r.5,
        permission: r.6,
    }
}

const ALICE: &str = "User:alice";
const BOB: &str = "User:bob";
const HOST: &str = "10.0.0.1";

fn config(allow_everyone: bool) -> AuthorizerConfig {
    AuthorizerConfig {
        super_users: vec!["User:admin".into()],
        allow_everyone_if_no_acl_found: allow_everyone,
    }
}

/// `(case, acls, allow.everyone.if.no.acl.found, principal, operation, resource type, name,
/// allowed)`; every request comes from [`HOST`].
type Case = (
    &'static str,
    &'static [Row],
    bool,
    &'static str,
    Operation,
    ResourceType,
    &'static str,
    bool,
);

const CASES: &[Case] = &[
    // The default rule.
    (
        "no ACLs, default deny",
        &[],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "no ACLs, allow everyone",
        &[],
        true,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "super user with no ACLs",
        &[],
        false,
        "User:admin",
        Alter,
        Cluster,
        CLUSTER_NAME,
        true,
    ),
    (
        "super user despite a DENY",
        &[(Topic, "t", Literal, "User:admin", "*", All, Deny)],
        false,
        "User:admin",
        Write,
        Topic,
        "t",
        true,
    ),
    (
        "an ACL for someone else closes the resource to the rest even with allow-everyone",
        &[(Topic, "t", Literal, BOB, "*", Read, Allow)],
        true,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "ACLs on another resource leave this one to the default rule",
        &[(Topic, "other", Literal, BOB, "*", Read, Allow)],
        true,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "ACLs on a group do not touch a topic of the same name",
        &[(Group, "t", Literal, ALICE, "*", Read, Deny)],
        true,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    // Literal, wildcard and prefixed patterns.
    (
        "literal allow",
        &[(Topic, "t", Literal, ALICE, "*", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "a literal name is not a prefix",
        &[(Topic, "t", Literal, ALICE, "*", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t2",
        false,
    ),
    (
        "wildcard resource name",
        &[(Topic, "*", Literal, ALICE, "*", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "anything",
        true,
    ),
    (
        "prefixed allow",
        &[(Topic, "pay", Prefixed, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Write,
        Topic,
        "payments",
        true,
    ),
    (
        "prefixed covers the prefix itself",
        &[(Topic, "pay", Prefixed, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Write,
        Topic,
        "pay",
        true,
    ),
    (
        "prefixed does not cover a shorter name",
        &[(Topic, "pay", Prefixed, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Write,
        Topic,
        "pa",
        false,
    ),
    (
        "a prefixed * is a literal prefix, not a wildcard",
        &[(Topic, "*", Prefixed, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Write,
        Topic,
        "t",
        false,
    ),
    // Principals and hosts.
    (
        "wildcard principal",
        &[(Topic, "t", Literal, "User:*", "*", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "another principal's allow",
        &[(Topic, "t", Literal, BOB, "*", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "the request's host",
        &[(Topic, "t", Literal, ALICE, HOST, Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "another host",
        &[(Topic, "t", Literal, ALICE, "10.0.0.2", Read, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    // Deny wins.
    (
        "deny beats a literal allow",
        &[
            (Topic, "t", Literal, ALICE, "*", Read, Allow),
            (Topic, "t", Literal, ALICE, "*", Read, Deny),
        ],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "a prefixed deny beats a literal allow",
        &[
            (Topic, "t", Literal, ALICE, "*", Write, Allow),
            (Topic, "t", Prefixed, "User:*", "*", Write, Deny),
        ],
        false,
        ALICE,
        Write,
        Topic,
        "t",
        false,
    ),
    (
        "a wildcard deny beats an allow for the principal",
        &[
            (Topic, "t", Literal, ALICE, "*", Write, Allow),
            (Topic, "*", Literal, "User:*", HOST, Write, Deny),
        ],
        false,
        ALICE,
        Write,
        Topic,
        "t",
        false,
    ),
    (
        "deny ALL denies every operation",
        &[
            (Topic, "t", Literal, ALICE, "*", Read, Allow),
            (Topic, "t", Literal, ALICE, "*", All, Deny),
        ],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "a deny for another operation leaves the allow",
        &[
            (Topic, "t", Literal, ALICE, "*", Read, Allow),
            (Topic, "t", Literal, ALICE, "*", Write, Deny),
        ],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        true,
    ),
    (
        "a deny on a topic closes it to operations nobody was allowed, even with allow-everyone",
        &[(Topic, "t", Literal, ALICE, "*", Write, Deny)],
        true,
        ALICE,
        Describe,
        Topic,
        "t",
        false,
    ),
    // Implications.
    (
        "allow ALL",
        &[(Group, "g", Literal, ALICE, "*", All, Allow)],
        false,
        ALICE,
        Delete,
        Group,
        "g",
        true,
    ),
    (
        "READ implies DESCRIBE",
        &[(Topic, "t", Literal, ALICE, "*", Read, Allow)],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        true,
    ),
    (
        "WRITE implies DESCRIBE",
        &[(Topic, "t", Literal, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        true,
    ),
    (
        "DELETE implies DESCRIBE",
        &[(Topic, "t", Literal, ALICE, "*", Delete, Allow)],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        true,
    ),
    (
        "ALTER implies DESCRIBE",
        &[(Topic, "t", Literal, ALICE, "*", Alter, Allow)],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        true,
    ),
    (
        "CREATE does not imply DESCRIBE",
        &[(Topic, "t", Literal, ALICE, "*", Create, Allow)],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        false,
    ),
    (
        "DESCRIBE does not imply READ",
        &[(Topic, "t", Literal, ALICE, "*", Describe, Allow)],
        false,
        ALICE,
        Read,
        Topic,
        "t",
        false,
    ),
    (
        "READ does not imply WRITE",
        &[(Topic, "t", Literal, ALICE, "*", Read, Allow)],
        false,
        ALICE,
        Write,
        Topic,
        "t",
        false,
    ),
    (
        "ALTER_CONFIGS implies DESCRIBE_CONFIGS",
        &[(Topic, "t", Literal, ALICE, "*", AlterConfigs, Allow)],
        false,
        ALICE,
        DescribeConfigs,
        Topic,
        "t",
        true,
    ),
    (
        "DESCRIBE_CONFIGS does not imply ALTER_CONFIGS",
        &[(Topic, "t", Literal, ALICE, "*", DescribeConfigs, Allow)],
        false,
        ALICE,
        AlterConfigs,
        Topic,
        "t",
        false,
    ),
    (
        "a DENY READ does not deny DESCRIBE to someone allowed it",
        &[
            (Topic, "t", Literal, ALICE, "*", Describe, Allow),
            (Topic, "t", Literal, ALICE, "*", Read, Deny),
        ],
        false,
        ALICE,
        Describe,
        Topic,
        "t",
        true,
    ),
    (
        "cluster CREATE",
        &[(Cluster, CLUSTER_NAME, Literal, ALICE, "*", Create, Allow)],
        false,
        ALICE,
        Create,
        Cluster,
        CLUSTER_NAME,
        true,
    ),
    (
        "transactional id",
        &[(TransactionalId, "tx-", Prefixed, ALICE, "*", Write, Allow)],
        false,
        ALICE,
        Write,
        TransactionalId,
        "tx-1",
        true,
    ),
];

#[test]
fn the_standard_authorizer_answers_every_row_as_kafka_does() {
    for (case, rows, allow_everyone, principal, op, kind, name, want) in CASES {
        let acls: Vec<Acl> = rows.iter().copied().map(acl).collect();
        let who = Requester {
            principal,
            host: HOST,
        };
        let got = authorize(
            &config(*allow_everyone),
            &acls,
            who,
            *op,
            Resource { kind: *kind, name },
        );
        assert_eq!(got, *want, "{case}");
    }
}

/// `(filter as wire codes and names, which of [`FILTER_ACLS`] it matches)`.
const FILTER_ACLS: &[Row] = &[
    (Topic, "orders", Literal, ALICE, "*", Read, Allow),
    (Topic, "*", Literal, BOB, "*", Write, Deny),
    (Topic, "ord", Prefixed, ALICE, HOST, Describe, Allow),
    (Group, "orders", Literal, ALICE, "*", Read, Allow),
    (Cluster, CLUSTER_NAME, Literal, ALICE, "*", Alter, Allow),
];

type FilterCase = (&'static str, WireAcl<'static>, &'static [usize]);

const fn filter(
    resource_type: i8,
    resource_name: Option<&'static str>,
    pattern_type: i8,
    principal: Option<&'static str>,
) -> WireAcl<'static> {
    WireAcl {
        resource_type,
        resource_name,
        pattern_type,
        principal,
        host: None,
        operation: ANY,
        permission: ANY,
    }
}

const FILTERS: &[FilterCase] = &[
    ("everything", filter(ANY, None, ANY, None), &[0, 1, 2, 3, 4]),
    ("topics", filter(2, None, ANY, None), &[0, 1, 2]),
    (
        "one name, any pattern type",
        filter(2, Some("orders"), ANY, None),
        &[0],
    ),
    (
        "one name, literal only",
        filter(ANY, Some("orders"), 3, None),
        &[0, 3],
    ),
    ("prefixed ones", filter(2, None, 4, None), &[2]),
    ("a prefixed name", filter(2, Some("ord"), 4, None), &[2]),
    (
        "match: what applies to a topic",
        filter(2, Some("orders"), MATCH, None),
        &[0, 1, 2],
    ),
    (
        "match: another topic",
        filter(2, Some("other"), MATCH, None),
        &[1],
    ),
    (
        "a principal, exactly",
        filter(ANY, None, ANY, Some(BOB)),
        &[1],
    ),
    (
        "the wildcard principal is not expanded",
        filter(ANY, None, ANY, Some("User:*")),
        &[],
    ),
];

#[test]
fn filters_match_as_kafka_acl_binding_filters_do() {
    let acls: Vec<Acl> = FILTER_ACLS.iter().copied().map(acl).collect();
    for (case, wire, want) in FILTERS {
        let f = AclFilter::from_wire(*wire).expect(case);
        let got: Vec<usize> = (0..acls.len()).filter(|i| f.matches(&acls[*i])).collect();
        assert_eq!(got, *want, "{case}");
    }
    let by_operation = AclFilter::from_wire(WireAcl {
        operation: Write.code(),
        permission: Deny.code(),
        host: Some("*"),
        ..filter(ANY, None, ANY, None)
    })
    .expect("filter");
    let got: Vec<usize> = (0..acls.len())
        .filter(|i| by_operation.matches(&acls[*i]))
        .collect();
    assert_eq!(got, [1]);
}

#[test]
fn unknown_filter_codes_are_invalid_requests() {
    for (wire, what) in [
        (filter(0, None, ANY, None), "patternFilter"),
        (filter(ANY, None, 0, None), "patternFilter"),
        (
            WireAcl {
                operation: 0,
                ..filter(ANY, None, ANY, None)
            },
            "entryFilter",
        ),
        (
            WireAcl {
                permission: 9,
                ..filter(ANY, None, ANY, None)
            },
            "entryFilter",
        ),
    ] {
        assert_eq!(
            AclFilter::from_wire(wire),
            Err(AclError::UnknownFilter(what))
        );
    }
}

#[test]
fn new_acls_are_checked_as_kafka_checks_them() {
    let good = WireAcl {
        resource_type: 2,
        resource_name: Some("t"),
        pattern_type: 3,
        principal: Some(ALICE),
        host: Some("*"),
        operation: 3,
        permission: 3,
    };
    assert_eq!(
        Acl::from_wire(good),
        Ok(acl((Topic, "t", Literal, ALICE, "*", Read, Allow)))
    );
    let cases: [(WireAcl<'_>, &str); 9] = [
        (
            WireAcl {
                resource_type: ANY,
                ..good
            },
            "Invalid resourceType 1",
        ),
        (
            WireAcl {
                pattern_type: MATCH,
                ..good
            },
            "Invalid patternType 2",
        ),
        (
            WireAcl {
                pattern_type: ANY,
                ..good
            },
            "Invalid patternType 1",
        ),
        (
            WireAcl {
                operation: ANY,
                ..good
            },
            "Invalid operation 1",
        ),
        (
            WireAcl {
                operation: 0,
                ..good
            },
            "Invalid operation 0",
        ),
        (
            WireAcl {
                permission: ANY,
                ..good
            },
            "Invalid permissionType 1",
        ),
        (
            WireAcl {
                resource_name: Some(""),
                ..good
            },
            "Resource name should not be empty",
        ),
        (
            WireAcl {
                resource_type: 4,
                ..good
            },
            "The only valid name for the CLUSTER resource is kafka-cluster",
        ),
        (
            WireAcl {
                principal: Some("alice"),
                ..good
            },
            "Could not parse principal",
        ),
    ];
    for (wire, message) in cases {
        let e = Acl::from_wire(wire).expect_err(message);
        assert!(e.to_string().starts_with(message), "{e} / {message}");
    }
}

#[test]
fn wire_codes_round_trip_and_names_are_kafkas() {
    for code in 2..=15 {
        let op = Operation::from_code(code).expect("an operation");
        assert_eq!(op.code(), code);
    }
    assert_eq!(Operation::from_code(ANY), None);
    assert_eq!(ResourceType::from_code(7), Some(User));
    assert_eq!(
        serde_json::to_string(&acl((
            TransactionalId,
            "x",
            Prefixed,
            ALICE,
            "*",
            DescribeConfigs,
            Deny
        )))
        .expect("encodes"),
        r#"{"resource_type":"TRANSACTIONAL_ID","resource_name":"x","pattern_type":"PREFIXED","principal":"User:alice","host":"*","operation":"DESCRIBE_CONFIGS","permission":"DENY"}"#
    );
}

/// `(case, acls, principal, allowed)` for WRITE on any topic, from [`HOST`], default deny:
/// Kafka's `authorizeByResourceType` cases.
const BY_TYPE: &[(&str, &[Row], &str, bool)] = &[
    ("no ACLs", &[], ALICE, false),
    ("super user", &[], "User:admin", true),
    (
        "a literal allow",
        &[(Topic, "t", Literal, ALICE, "*", Write, Allow)],
        ALICE,
        true,
    ),
    (
        "an allow for someone else",
        &[(Topic, "t", Literal, BOB, "*", Write, Allow)],
        ALICE,
        false,
    ),
    (
        "an allow of another operation does not imply WRITE",
        &[(Topic, "t", Literal, ALICE, "*", Read, Allow)],
        ALICE,
        false,
    ),
    (
        "a literal allow denied literally",
        &[
            (Topic, "t", Literal, ALICE, "*", Write, Allow),
            (Topic, "t", Literal, ALICE, "*", Write, Deny),
        ],
        ALICE,
        false,
    ),
    (
        "a prefixed allow dominated by a shorter prefixed deny",
        &[
            (Topic, "team-a", Prefixed, ALICE, "*", Write, Allow),
            (Topic, "team", Prefixed, ALICE, "*", Write, Deny),
        ],
        ALICE,
        false,
    ),
    (
        "a prefixed allow next to a longer prefixed deny",
        &[
            (Topic, "team", Prefixed, ALICE, "*", Write, Allow),
            (Topic, "team-a", Prefixed, ALICE, "*", Write, Deny),
        ],
        ALICE,
        true,
    ),
    (
        "a wildcard deny wins over everything",
        &[
            (Topic, "t", Literal, ALICE, "*", All, Allow),
            (Topic, "*", Literal, "User:*", "*", Write, Deny),
        ],
        ALICE,
        false,
    ),
    (
        "an allow from another host",
        &[(Topic, "t", Literal, ALICE, "10.9.9.9", Write, Allow)],
        ALICE,
        false,
    ),
];

#[test]
fn authorize_by_resource_type_follows_kafkas_cases() {
    for (case, rows, principal, want) in BY_TYPE {
        let acls: Vec<Acl> = rows.iter().copied().map(acl).collect();
        let who = Requester {
            principal,
            host: HOST,
        };
        let got = authorize_by_resource_type(&config(false), &acls, who, Write, Topic);
        assert_eq!(got, *want, "{case}");
    }
}
