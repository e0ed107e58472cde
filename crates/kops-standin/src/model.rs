//! The stand-in's version of kOps' task graph: from the stored Cluster and
//! InstanceGroups to the AWS resources (`VPC/…`, `Subnet/…`,
//! `SecurityGroupRule/…`, `LaunchTemplate/…`, `AutoscalingGroup/…`, …) and
//! the managed files and keypairs kOps would keep, each with the fields kOps
//! prints for it. Names follow kOps' conventions (`nodes.<cluster>`,
//! `<ig>.masters.<cluster>`, `from-<cidr>-ingress-tcp-22to22-masters.<cluster>`)
//! so the dry-run output reads like the real one; the field sets are a
//! representative subset, not kOps' full ones.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::complete;
use crate::objects::{
    name_of, scalar_string, spec_bool, spec_int, spec_map, spec_str, spec_strings, spec_value,
};

/// A field value, printed the way kOps' `reflectutils.ValueAsString` prints
/// task fields. References to other tasks are plain strings such as
/// `name:nodes.example.com`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "lowercase")]
pub enum Field {
    Str(String),
    Bool(bool),
    Int(i64),
    List(Vec<String>),
    Map(BTreeMap<String, String>),
    /// A `fi.Resource` (user data, file contents, policy documents): not
    /// printed for creates, diffed line by line for modifies.
    Text(String),
}

impl Field {
    pub fn render(&self) -> String {
        match self {
            Field::Str(s) => s.clone(),
            Field::Bool(b) => b.to_string(),
            Field::Int(i) => i.to_string(),
            Field::List(items) => format!("[{}]", items.join(", ")),
            Field::Map(map) => format!(
                "{{{}}}",
                map.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Field::Text(_) => "<resource>".to_string(),
        }
    }
}

/// Where a resource lives, i.e. where kOps finds its actual state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Home {
    /// In the cloud (the stand-in's simulated cloud).
    Cloud,
    /// A managed file in the state store, at this key.
    StoreFile(String),
    /// A keyset in the state store, at this key.
    Keyset(String),
}

/// kOps' `--phase` groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Network,
    Security,
    Cluster,
}

impl Phase {
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "network" => Some(Phase::Network),
            "security" => Some(Phase::Security),
            "cluster" => Some(Phase::Cluster),
            _ => None,
        }
    }
}

/// Instance group roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Bastion,
    ControlPlane,
    ApiServer,
    Node,
}

impl Role {
    /// `spec.role` as kOps accepts it (`Master` is the old name of
    /// `ControlPlane`).
    pub fn from_spec(s: &str) -> Option<Role> {
        match s {
            "Master" | "ControlPlane" => Some(Role::ControlPlane),
            "Node" => Some(Role::Node),
            "Bastion" => Some(Role::Bastion),
            "APIServer" => Some(Role::ApiServer),
            _ => None,
        }
    }

    /// `--instance-group-roles` values (kOps parses them leniently).
    pub fn from_flag(s: &str) -> Option<Option<Role>> {
        match s.to_ascii_lowercase().as_str() {
            "control-plane" | "controlplane" | "master" => Some(Some(Role::ControlPlane)),
            "apiserver" => Some(Some(Role::ApiServer)),
            "node" => Some(Some(Role::Node)),
            "bastion" => Some(Some(Role::Bastion)),
            // Documented as roles but no instance group has them.
            "etcd" | "scheduler" | "kubecontrollermanager" => Some(None),
            _ => None,
        }
    }

    pub fn api_name(self) -> &'static str {
        match self {
            Role::ControlPlane => "ControlPlane",
            Role::Node => "Node",
            Role::Bastion => "Bastion",
            Role::ApiServer => "APIServer",
        }
    }

    /// Directory under `igconfig/`.
    pub fn dir(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Node => "node",
            Role::Bastion => "bastion",
            Role::ApiServer => "apiserver",
        }
    }

    pub fn node_role_label(self) -> &'static str {
        match self {
            Role::ControlPlane => "node-role.kubernetes.io/control-plane",
            Role::Node => "node-role.kubernetes.io/node",
            Role::Bastion => "node-role.kubernetes.io/bastion",
            Role::ApiServer => "node-role.kubernetes.io/api-server",
        }
    }

    fn tag_role(self) -> &'static str {
        match self {
            Role::ControlPlane => "control-plane",
            Role::Node => "node",
            Role::Bastion => "bastion",
            Role::ApiServer => "api-server",
        }
    }

    /// The IAM role / instance profile family (`masters`, `nodes`, `bastions`).
    fn iam_family(self) -> &'static str {
        match self {
            Role::ControlPlane => "masters",
            Role::Node | Role::ApiServer => "nodes",
            Role::Bastion => "bastions",
        }
    }
}

/// One resource kOps would manage.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: &'static str,
    pub name: String,
    pub fields: Vec<(String, Field)>,
    pub home: Home,
    pub phase: Phase,
    /// The instance group the resource belongs to, for `--instance-group`.
    pub instance_group: Option<(String, Role)>,
    /// Shared resources (`networkID`, subnet `id`, `sshKeyName`) exist
    /// outside kOps: they are found, never created.
    pub shared: bool,
}

impl Resource {
    fn new(kind: &'static str, name: impl Into<String>, phase: Phase) -> Resource {
        Resource {
            kind,
            name: name.into(),
            fields: Vec::new(),
            home: Home::Cloud,
            phase,
            instance_group: None,
            shared: false,
        }
    }

    /// `Type/name`, the identity kOps prints.
    pub fn key(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }

    fn set(mut self, name: &str, value: Field) -> Resource {
        self.fields.push((name.to_string(), value));
        self
    }
    fn s(self, name: &str, value: impl Into<String>) -> Resource {
        self.set(name, Field::Str(value.into()))
    }
    fn opt_s(self, name: &str, value: Option<String>) -> Resource {
        match value {
            Some(v) => self.s(name, v),
            None => self,
        }
    }
    fn b(self, name: &str, value: bool) -> Resource {
        self.set(name, Field::Bool(value))
    }
    fn opt_b(self, name: &str, value: Option<bool>) -> Resource {
        match value {
            Some(v) => self.b(name, v),
            None => self,
        }
    }
    fn i(self, name: &str, value: i64) -> Resource {
        self.set(name, Field::Int(value))
    }
    fn opt_i(self, name: &str, value: Option<i64>) -> Resource {
        match value {
            Some(v) => self.i(name, v),
            None => self,
        }
    }
    fn list(self, name: &str, value: Vec<String>) -> Resource {
        self.set(name, Field::List(value))
    }
    fn tags(self, value: BTreeMap<String, String>) -> Resource {
        self.set("Tags", Field::Map(value))
    }
    fn text(self, name: &str, value: String) -> Resource {
        self.set(name, Field::Text(value))
    }
    fn home(mut self, home: Home) -> Resource {
        self.home = home;
        self
    }
    fn shared(mut self, shared: bool) -> Resource {
        self.shared = shared;
        self
    }
    fn owned_by(mut self, ig: &str, role: Role) -> Resource {
        self.instance_group = Some((ig.to_string(), role));
        self
    }
}

/// The sizing of one instance group's autoscaling group.
#[derive(Clone, Debug)]
pub struct GroupSpec {
    pub instance_group: String,
    pub role: Role,
    pub autoscaling_group: String,
    pub launch_template: String,
    pub min: i64,
    pub max: i64,
}

/// Everything kOps would manage for a cluster.
#[derive(Clone, Debug, Default)]
pub struct Desired {
    pub resources: Vec<Resource>,
    pub groups: Vec<GroupSpec>,
}

/// What the model is built from.
pub struct Inputs<'a> {
    pub cluster: &'a Value,
    pub instance_groups: &'a [Value],
    pub store_url: &'a str,
    /// Names of the SSH public keys under `pki/ssh/public/admin/`.
    pub ssh_key_ids: &'a [String],
    /// The client's kOps version.
    pub version: &'a str,
}

/// The role of an instance group, or kOps' validation error.
pub fn role_of(ig: &Value) -> Result<Role> {
    let role = spec_str(ig, "role").unwrap_or("");
    match Role::from_spec(role) {
        Some(r) => Ok(r),
        None if role.is_empty() => bail!(
            "InstanceGroup {:?}: spec.role: Required value: Role must be set",
            name_of(ig)
        ),
        None => bail!(
            "InstanceGroup {:?}: spec.role: Unsupported value: {role:?}: supported values: \"APIServer\", \"Bastion\", \"ControlPlane\", \"Node\"",
            name_of(ig)
        ),
    }
}

/// `<ig>.masters.<cluster>` for control-plane groups, `<ig>.<cluster>`
/// otherwise: the name of the group's launch template and ASG.
pub fn group_resource_name(ig: &str, role: Role, cluster: &str) -> String {
    match role {
        Role::ControlPlane => format!("{ig}.masters.{cluster}"),
        _ => format!("{ig}.{cluster}"),
    }
}

pub fn min_max(ig: &Value) -> (i64, i64) {
    let min = spec_int(ig, "minSize").unwrap_or(1).max(0);
    let max = spec_int(ig, "maxSize").unwrap_or(min).max(min);
    (min, max)
}

/// The AWS region of the cluster: the first subnet's zone without its
/// letter (`us-test-1a` → `us-test-1`).
pub fn region_of(cluster: &Value) -> String {
    let zone = spec_value(cluster, "subnets")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
        .and_then(|s| s.get("zone").or_else(|| s.get("region")))
        .and_then(Value::as_str)
        .unwrap_or("us-east-1a");
    zone.trim_end_matches(|c: char| c.is_ascii_lowercase())
        .to_string()
}

struct Subnet {
    name: String,
    zone: String,
    kind: String,
    cidr: Option<String>,
    ipv6_cidr: Option<String>,
    id: Option<String>,
}

fn subnets(cluster: &Value) -> Vec<Subnet> {
    spec_value(cluster, "subnets")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .map(|s| {
                    let get = |k: &str| s.get(k).and_then(Value::as_str).map(str::to_string);
                    Subnet {
                        name: get("name").unwrap_or_default(),
                        zone: get("zone").unwrap_or_default(),
                        kind: get("type").unwrap_or_else(|| "Public".to_string()),
                        cidr: get("cidr"),
                        ipv6_cidr: get("ipv6CIDR"),
                        id: get("id"),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A source or destination of a security group rule.
enum Peer {
    Cidr(String),
    Group(String),
}

impl Peer {
    fn label(&self) -> &str {
        match self {
            Peer::Cidr(c) | Peer::Group(c) => c,
        }
    }
}

const METRICS: [&str; 8] = [
    "GroupDesiredCapacity",
    "GroupInServiceInstances",
    "GroupMaxSize",
    "GroupMinSize",
    "GroupPendingInstances",
    "GroupStandbyInstances",
    "GroupTerminatingInstances",
    "GroupTotalInstances",
];

/// Builds everything kOps would manage for the cluster.
pub fn build(inputs: &Inputs) -> Result<Desired> {
    let mut groups = Vec::new();
    for ig in inputs.instance_groups {
        groups.push((ig, role_of(ig)?));
    }
    let mut b = Builder::new(inputs, groups);
    b.network();
    b.security();
    b.iam();
    let ssh_key = b.ssh_key();
    b.keypairs();
    b.load_balancer();
    b.managed_files()?;
    for i in 0..b.groups.len() {
        let (ig, role) = b.groups[i];
        b.instance_group(ig, role, ssh_key.as_deref());
    }
    Ok(b.out)
}

/// What the sections of [`build`] share: the cluster, its names and base
/// tags, and the resources built so far.
struct Builder<'a> {
    inputs: &'a Inputs<'a>,
    cluster: &'a Value,
    /// The cluster name.
    c: String,
    completed: Value,
    region: String,
    subnets: Vec<Subnet>,
    groups: Vec<(&'a Value, Role)>,
    /// `spec.api.loadBalancer`, when the API is behind a load balancer.
    load_balancer: Option<Value>,
    /// Tags every cluster-owned resource gets (cloud labels included).
    base_tags: BTreeMap<String, String>,
    out: Desired,
}

fn name_ref(name: &str) -> String {
    format!("name:{name}")
}

impl<'a> Builder<'a> {
    fn new(inputs: &'a Inputs<'a>, groups: Vec<(&'a Value, Role)>) -> Builder<'a> {
        let cluster = inputs.cluster;
        let c = name_of(cluster).to_string();
        let mut base_tags: BTreeMap<String, String> =
            spec_map(cluster, "cloudLabels").into_iter().collect();
        base_tags.insert("KubernetesCluster".into(), c.clone());
        base_tags.insert(format!("kubernetes.io/cluster/{c}"), "owned".into());
        Builder {
            inputs,
            cluster,
            completed: complete::completed_cluster(cluster, inputs.store_url),
            region: region_of(cluster),
            subnets: subnets(cluster),
            groups,
            load_balancer: spec_value(cluster, "api/loadBalancer").cloned(),
            base_tags,
            c,
            out: Desired::default(),
        }
    }

    fn push(&mut self, resource: Resource) {
        self.out.resources.push(resource);
    }

    /// The base tags plus `Name` and `extra`.
    fn tags(&self, name: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut t = self.base_tags.clone();
        t.insert("Name".into(), name.to_string());
        for (k, v) in extra {
            t.insert((*k).to_string(), (*v).to_string());
        }
        t
    }

    fn has_role(&self, role: Role) -> bool {
        self.groups.iter().any(|(_, r)| *r == role)
    }

    fn masters_sg(&self) -> String {
        format!("masters.{}", self.c)
    }
    fn nodes_sg(&self) -> String {
        format!("nodes.{}", self.c)
    }
    fn bastion_sg(&self) -> String {
        format!("bastion.{}", self.c)
    }
    fn api_sg(&self) -> String {
        format!("api-elb.{}", self.c)
    }
    fn api_name(&self) -> String {
        format!("api.{}", self.c)
    }
    fn target_group(&self) -> String {
        format!("tcp-{}", short_name(&self.c))
    }
    fn classic_load_balancer(&self) -> bool {
        self.load_balancer
            .as_ref()
            .and_then(|lb| lb.get("class").and_then(Value::as_str))
            == Some("Classic")
    }

    /// VPC, DHCP options, gateway, route tables, subnets, NAT per zone with
    /// private subnets.
    fn network(&mut self) {
        let c = self.c.clone();
        let network_id = spec_str(self.cluster, "networkID").map(str::to_string);
        let shared_vpc = network_id.is_some();
        let mut vpc = Resource::new("VPC", &c, Phase::Network)
            .b("AmazonIPv6", false)
            .opt_s(
                "CIDR",
                spec_str(self.cluster, "networkCIDR").map(str::to_string),
            )
            .b("EnableDNSHostnames", true)
            .b("EnableDNSSupport", true)
            .opt_s("ID", network_id)
            .b("Shared", shared_vpc)
            .shared(shared_vpc);
        if !shared_vpc {
            vpc = vpc.tags(self.tags(&c, &[]));
        }
        self.push(vpc);
        for cidr in spec_strings(self.cluster, "additionalNetworkCIDRs") {
            self.push(
                Resource::new("VPCCIDRBlock", &cidr, Phase::Network)
                    .s("CIDRBlock", &cidr)
                    .b("Shared", shared_vpc)
                    .s("VPC", name_ref(&c)),
            );
        }
        if !shared_vpc {
            let domain = if self.region == "us-east-1" {
                "ec2.internal".to_string()
            } else {
                format!("{}.compute.internal", self.region)
            };
            self.push(
                Resource::new("DHCPOptions", &c, Phase::Network)
                    .s("DomainName", domain)
                    .s("DomainNameServers", "AmazonProvidedDNS")
                    .b("Shared", false)
                    .tags(self.tags(&c, &[])),
            );
            self.push(
                Resource::new("VPCDHCPOptionsAssociation", &c, Phase::Network)
                    .s("DHCPOptions", name_ref(&c))
                    .s("VPC", name_ref(&c)),
            );
        }
        self.push(
            Resource::new("InternetGateway", &c, Phase::Network)
                .b("Shared", shared_vpc)
                .tags(self.tags(&c, &[]))
                .s("VPC", name_ref(&c))
                .shared(shared_vpc),
        );
        self.push(
            Resource::new("RouteTable", &c, Phase::Network)
                .b("Shared", false)
                .tags(self.tags(&c, &[("kubernetes.io/kops/role", "public")]))
                .s("VPC", name_ref(&c)),
        );
        self.push(
            Resource::new("Route", "0.0.0.0/0", Phase::Network)
                .s("CIDR", "0.0.0.0/0")
                .s("InternetGateway", name_ref(&c))
                .s("RouteTable", name_ref(&c)),
        );

        let mut private_zones = BTreeSet::new();
        let mut resources = Vec::new();
        for s in &self.subnets {
            let name = format!("{}.{c}", s.name);
            let (elb_tag, route_table) = if s.kind == "Private" {
                private_zones.insert(s.zone.clone());
                (
                    "kubernetes.io/role/internal-elb",
                    format!("private-{}.{c}", s.zone),
                )
            } else {
                ("kubernetes.io/role/elb", c.clone())
            };
            resources.push(
                Resource::new("Subnet", &name, Phase::Network)
                    .s("AvailabilityZone", &s.zone)
                    .opt_s("CIDR", s.cidr.clone())
                    .opt_s("ID", s.id.clone())
                    .opt_s("IPv6CIDR", s.ipv6_cidr.clone())
                    .b("Shared", s.id.is_some())
                    .tags(self.tags(&name, &[("SubnetType", &s.kind), (elb_tag, "1")]))
                    .s("VPC", name_ref(&c))
                    .shared(s.id.is_some()),
            );
            resources.push(
                Resource::new("RouteTableAssociation", &name, Phase::Network)
                    .s("RouteTable", name_ref(&route_table))
                    .s("Subnet", name_ref(&name)),
            );
        }
        for zone in &private_zones {
            let zc = format!("{zone}.{c}");
            let route_table = format!("private-{zone}.{c}");
            // The NAT gateway sits in the zone's utility (public) subnet.
            let utility = self
                .subnets
                .iter()
                .find(|s| s.kind == "Utility" && &s.zone == zone)
                .or_else(|| self.subnets.iter().find(|s| s.kind == "Utility"))
                .map(|s| format!("{}.{c}", s.name))
                .unwrap_or_else(|| zc.clone());
            resources.push(
                Resource::new("ElasticIP", &zc, Phase::Network)
                    .s("AssociatedNatGatewayRouteTable", name_ref(&route_table))
                    .b("Shared", false)
                    .tags(self.tags(&zc, &[])),
            );
            resources.push(
                Resource::new("NatGateway", &zc, Phase::Network)
                    .s("AllocationID", name_ref(&zc))
                    .s("AssociatedRouteTable", name_ref(&route_table))
                    .b("Shared", false)
                    .s("Subnet", name_ref(&utility))
                    .tags(self.tags(&zc, &[])),
            );
            resources.push(
                Resource::new("RouteTable", &route_table, Phase::Network)
                    .b("Shared", false)
                    .tags(self.tags(
                        &route_table,
                        &[("kubernetes.io/kops/role", &format!("private-{zone}"))],
                    ))
                    .s("VPC", name_ref(&c)),
            );
            resources.push(
                Resource::new("Route", format!("private-{zone}-0.0.0.0/0"), Phase::Network)
                    .s("CIDR", "0.0.0.0/0")
                    .s("NatGateway", name_ref(&zc))
                    .s("RouteTable", name_ref(&route_table)),
            );
        }
        self.out.resources.extend(resources);
    }

    /// Security groups and their rules.
    fn security(&mut self) {
        let (masters, nodes, bastion, api) = (
            self.masters_sg(),
            self.nodes_sg(),
            self.bastion_sg(),
            self.api_sg(),
        );
        let has_bastion = self.has_role(Role::Bastion);
        let behind_lb = self.load_balancer.is_some();
        // RemoveExtraRules: which rules kOps removes when no longer wanted.
        let mut groups = vec![
            (
                masters.clone(),
                "Security group for masters",
                vec![
                    "port=22",
                    "port=443",
                    "port=2380",
                    "port=2381",
                    "port=4001",
                    "port=4002",
                    "port=4789",
                    "port=179",
                    "port=8443",
                ],
            ),
            (nodes.clone(), "Security group for nodes", vec!["port=22"]),
        ];
        if has_bastion {
            groups.push((
                bastion.clone(),
                "Security group for bastion",
                vec!["port=22"],
            ));
        }
        if behind_lb {
            groups.push((api.clone(), "Security group for api ELB", vec!["port=443"]));
        }
        for (sg, description, remove) in &groups {
            self.push(
                Resource::new("SecurityGroup", sg, Phase::Security)
                    .s("Description", *description)
                    .list(
                        "RemoveExtraRules",
                        remove.iter().map(|s| s.to_string()).collect(),
                    )
                    .tags(self.tags(sg, &[]))
                    .s("VPC", name_ref(&self.c)),
            );
        }

        let ssh_targets = if has_bastion {
            vec![bastion.clone()]
        } else {
            vec![masters.clone(), nodes.clone()]
        };
        for cidr in spec_strings(self.cluster, "sshAccess") {
            for target in &ssh_targets {
                self.rule(Peer::Cidr(cidr.clone()), false, "tcp", (22, 22), target);
            }
        }
        if has_bastion {
            self.rule(
                Peer::Group(bastion.clone()),
                false,
                "tcp",
                (22, 22),
                &masters,
            );
            self.rule(Peer::Group(bastion.clone()), false, "tcp", (22, 22), &nodes);
        }
        let api_target = if behind_lb { &api } else { &masters };
        for cidr in spec_strings(self.cluster, "kubernetesApiAccess") {
            self.rule(Peer::Cidr(cidr), false, "tcp", (443, 443), api_target);
        }
        if behind_lb {
            self.rule(Peer::Group(api.clone()), false, "tcp", (443, 443), &masters);
        }
        for cidr in spec_strings(self.cluster, "nodePortAccess") {
            self.rule(
                Peer::Cidr(cidr.clone()),
                false,
                "tcp",
                (30000, 32767),
                &nodes,
            );
            self.rule(Peer::Cidr(cidr), false, "udp", (30000, 32767), &nodes);
        }
        for (sg, _, _) in &groups {
            self.rule(Peer::Cidr("0.0.0.0/0".into()), true, "all", (0, 0), sg);
            self.rule(Peer::Cidr("::/0".into()), true, "all", (0, 0), sg);
        }
        self.rule(Peer::Group(masters.clone()), false, "all", (0, 0), &masters);
        self.rule(Peer::Group(masters.clone()), false, "all", (0, 0), &nodes);
        self.rule(Peer::Group(nodes.clone()), false, "all", (0, 0), &nodes);
        self.rule(
            Peer::Group(nodes.clone()),
            false,
            "tcp",
            (1, 2379),
            &masters,
        );
        self.rule(
            Peer::Group(nodes.clone()),
            false,
            "tcp",
            (2382, 4000),
            &masters,
        );
        self.rule(
            Peer::Group(nodes.clone()),
            false,
            "tcp",
            (4003, 65535),
            &masters,
        );
        self.rule(Peer::Group(nodes), false, "udp", (1, 65535), &masters);
    }

    /// One security group rule, named as kOps names them: after source,
    /// direction, protocol, ports and target.
    fn rule(&mut self, from: Peer, egress: bool, protocol: &str, ports: (i64, i64), sg: &str) {
        let name = if egress {
            format!(
                "from-{sg}-egress-{protocol}-{}to{}-{}",
                ports.0,
                ports.1,
                from.label()
            )
        } else {
            format!(
                "from-{}-ingress-{protocol}-{}to{}-{sg}",
                from.label(),
                ports.0,
                ports.1
            )
        };
        let mut res = Resource::new("SecurityGroupRule", &name, Phase::Security);
        match &from {
            Peer::Cidr(cidr) if cidr.starts_with("pl-") => res = res.s("PrefixList", cidr),
            Peer::Cidr(cidr) if cidr.contains(':') => res = res.s("IPv6CIDR", cidr),
            Peer::Cidr(cidr) => res = res.s("CIDR", cidr),
            Peer::Group(_) => {}
        }
        if egress {
            res = res.b("Egress", true);
        }
        if protocol != "all" {
            res = res.i("FromPort", ports.0).s("Protocol", protocol);
        }
        res = res.s("SecurityGroup", name_ref(sg));
        if let Peer::Group(g) = &from {
            res = res.s("SourceGroup", name_ref(g));
        }
        res = res.tags(self.tags(&name, &[]));
        if protocol != "all" {
            res = res.i("ToPort", ports.1);
        }
        self.push(res);
    }

    /// IAM roles, instance profiles and policies per role family, unless
    /// every group of the family brings its own instance profile.
    fn iam(&mut self) {
        let c = self.c.clone();
        let mut families: BTreeMap<&str, bool> = BTreeMap::new();
        for (ig, role) in &self.groups {
            let own = spec_str(ig, "iam/profile").is_some();
            let entry = families.entry(role.iam_family()).or_insert(true);
            *entry = *entry && own;
        }
        let additional = spec_map(self.cluster, "additionalPolicies");
        let boundary = spec_str(self.cluster, "iam/permissionsBoundary").map(str::to_string);
        for (family, all_own) in families {
            if all_own {
                continue;
            }
            let name = format!("{family}.{c}");
            self.push(
                Resource::new("IAMRole", &name, Phase::Security)
                    .s("ExportWithID", family)
                    .opt_s("PermissionsBoundary", boundary.clone())
                    .text("RolePolicyDocument", assume_role_policy())
                    .tags(self.tags(&name, &[])),
            );
            self.push(
                Resource::new("IAMInstanceProfile", &name, Phase::Security)
                    .b("Shared", false)
                    .tags(self.tags(&name, &[])),
            );
            self.push(
                Resource::new("IAMInstanceProfileRole", &name, Phase::Security)
                    .s("InstanceProfile", name_ref(&name))
                    .s("Role", name_ref(&name)),
            );
            self.push(
                Resource::new("IAMRolePolicy", &name, Phase::Security)
                    .b("Managed", false)
                    .text("PolicyDocument", role_policy(family, &c, &self.completed))
                    .s("Role", name_ref(&name)),
            );
            // spec.additionalPolicies keys for this family.
            let keys: &[&str] = match family {
                "masters" => &["master", "control-plane"],
                "nodes" => &["node"],
                _ => &["bastion"],
            };
            for (k, policy) in &additional {
                if keys.contains(&k.as_str()) {
                    self.push(
                        Resource::new(
                            "IAMRolePolicy",
                            format!("additional.{name}"),
                            Phase::Security,
                        )
                        .b("Managed", false)
                        .text("PolicyDocument", policy.clone())
                        .s("Role", name_ref(&name)),
                    );
                }
            }
        }
    }

    /// The SSH key: a named, pre-existing key pair, or the admin key in the
    /// store. Returns its task name.
    fn ssh_key(&mut self) -> Option<String> {
        if let Some(name) = spec_str(self.cluster, "sshKeyName") {
            let name = name.to_string();
            self.push(
                Resource::new("SSHKey", &name, Phase::Security)
                    .b("Shared", true)
                    .shared(true),
            );
            return Some(name);
        }
        let id = self.inputs.ssh_key_ids.first()?;
        let fingerprint = colon_hex(id);
        let name = format!("kubernetes.{}-{fingerprint}", self.c);
        self.push(
            Resource::new("SSHKey", &name, Phase::Security)
                .s("KeyFingerprint", &fingerprint)
                .b("Shared", false)
                .tags(self.tags(&self.c, &[])),
        );
        Some(name)
    }

    /// The CA keypairs, kept in the store's `pki/`.
    fn keypairs(&mut self) {
        let mut names = vec![
            "apiserver-aggregator-ca".to_string(),
            "etcd-clients-ca".to_string(),
            "kubernetes-ca".to_string(),
            "service-account".to_string(),
        ];
        for etcd in spec_value(self.cluster, "etcdClusters")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(e) = etcd.get("name").and_then(Value::as_str) {
                names.push(format!("etcd-manager-ca-{e}"));
                names.push(format!("etcd-peers-ca-{e}"));
            }
        }
        names.sort();
        for k in &names {
            let key = format!("{}/pki/private/{k}/keyset.yaml", self.c);
            self.push(
                Resource::new("Keypair", k, Phase::Security)
                    .s("Subject", format!("cn={k}"))
                    .s("Type", "ca")
                    .home(Home::Keyset(key)),
            );
        }
    }

    /// The API load balancer, its target group and DNS name.
    fn load_balancer(&mut self) {
        let Some(lb) = self.load_balancer.clone() else {
            return;
        };
        let c = self.c.clone();
        let api_name = self.api_name();
        let target_group = self.target_group();
        let short = short_name(&c);
        let internal = lb.get("type").and_then(Value::as_str) == Some("Internal");
        let scheme = if internal {
            "internal"
        } else {
            "internet-facing"
        };
        let lb_subnets: Vec<String> = match lb.get("subnets").and_then(Value::as_array) {
            Some(list) if !list.is_empty() => list
                .iter()
                .filter_map(|s| s.get("name").and_then(Value::as_str))
                .map(|n| name_ref(&format!("{n}.{c}")))
                .collect(),
            _ => self
                .subnets
                .iter()
                .filter(|s| (s.kind == "Private") == internal)
                .map(|s| name_ref(&format!("{}.{c}", s.name)))
                .collect(),
        };
        let mut sgs = vec![name_ref(&self.api_sg())];
        for extra in lb
            .get("additionalSecurityGroups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            sgs.push(format!("id:{}", scalar_string(extra)));
        }
        let cross_zone = lb
            .get("crossZoneLoadBalancing")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if self.classic_load_balancer() {
            self.push(
                Resource::new("ClassicLoadBalancer", &api_name, Phase::Cluster)
                    .b("CrossZoneLoadBalancing", cross_zone)
                    .s("LoadBalancerName", format!("api-{short}"))
                    .s("Scheme", scheme)
                    .list("SecurityGroups", sgs)
                    .list("Subnets", lb_subnets)
                    .tags(self.tags(&api_name, &[])),
            );
        } else {
            self.push(
                Resource::new("NetworkLoadBalancer", &api_name, Phase::Cluster)
                    .b("CrossZoneLoadBalancing", cross_zone)
                    .s("IpAddressType", "ipv4")
                    .s("LoadBalancerBaseName", format!("api-{short}"))
                    .s("Scheme", scheme)
                    .list("SecurityGroups", sgs)
                    .list("SubnetMappings", lb_subnets)
                    .tags(self.tags(&api_name, &[]))
                    .list("TargetGroups", vec![name_ref(&target_group)])
                    .s("Type", "network"),
            );
            self.push(
                Resource::new("TargetGroup", &target_group, Phase::Cluster)
                    .i("HealthyThreshold", 2)
                    .i("Interval", 10)
                    .i("Port", 443)
                    .s("Protocol", "TCP")
                    .b("Shared", false)
                    .tags(self.tags(&target_group, &[]))
                    .i("UnhealthyThreshold", 2)
                    .s("VPC", name_ref(&c)),
            );
        }
        // Gossip clusters (`*.k8s.local`) have no DNS zone.
        if !c.ends_with(".k8s.local") {
            let zone = spec_str(self.cluster, "dnsZone")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    c.split_once('.')
                        .map(|(_, z)| z.to_string())
                        .unwrap_or_default()
                });
            self.push(
                Resource::new("DNSName", &api_name, Phase::Cluster)
                    .s("ResolvedType", "A")
                    .s("TargetLoadBalancer", name_ref(&api_name))
                    .s("Zone", name_ref(&zone)),
            );
        }
    }

    /// A file kOps keeps in the store, at `<cluster>/<location>`.
    fn managed_file(&self, name: String, location: String, contents: String) -> Resource {
        Resource::new("ManagedFile", name, Phase::Cluster)
            .s("Location", &location)
            .text("Contents", contents)
            .home(Home::StoreFile(format!("{}/{location}", self.c)))
    }

    /// The completed spec, the version file and the etcd cluster specs.
    fn managed_files(&mut self) -> Result<()> {
        let completed_text = crate::objects::to_yaml(&self.completed)?;
        let files = [
            ("cluster-completed.spec", completed_text),
            ("kops-version.txt", format!("{}\n", self.inputs.version)),
        ];
        for (name, contents) in files {
            let file = self.managed_file(name.into(), name.into(), contents);
            self.push(file);
        }
        let etcd_clusters: Vec<Value> = spec_value(&self.completed, "etcdClusters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for etcd in &etcd_clusters {
            let Some(e) = etcd.get("name").and_then(Value::as_str) else {
                continue;
            };
            let file = self.managed_file(
                format!("etcd-cluster-spec-{e}"),
                format!("backups/etcd/{e}/control/etcd-cluster-spec"),
                complete::etcd_cluster_spec(&self.completed, etcd),
            );
            self.push(file);
        }
        Ok(())
    }

    /// Tags of an instance group's launch template and autoscaling group:
    /// the cluster's, the group's cloud labels, and the cluster-autoscaler
    /// node-template tags for its labels and taints.
    fn group_tags(
        &self,
        ig: &Value,
        ig_name: &str,
        role: Role,
        resource: &str,
    ) -> BTreeMap<String, String> {
        let mut tags = self.tags(resource, &[]);
        for (k, v) in spec_map(ig, "cloudLabels") {
            tags.insert(k, v);
        }
        let template = "k8s.io/cluster-autoscaler/node-template";
        for (k, v) in spec_map(ig, "nodeLabels") {
            tags.insert(format!("{template}/label/{k}"), v);
        }
        tags.insert(
            format!("{template}/label/kops.k8s.io/instancegroup"),
            ig_name.to_string(),
        );
        tags.insert(
            format!("{template}/label/{}", role.node_role_label()),
            String::new(),
        );
        // `key=value:Effect` or `key:Effect` → tag value `value:Effect`.
        for taint in spec_strings(ig, "taints") {
            let (key, rest) = taint.split_once('=').unwrap_or((taint.as_str(), ""));
            let (key, rest) = match key.split_once(':') {
                Some((k, effect)) => (k, format!(":{effect}")),
                None => (key, rest.to_string()),
            };
            tags.insert(format!("{template}/taint/{key}"), rest);
        }
        tags.insert(format!("k8s.io/role/{}", role.tag_role()), "1".into());
        tags.insert("kops.k8s.io/instancegroup".into(), ig_name.to_string());
        tags
    }

    /// An instance group's nodeup configuration, launch template,
    /// autoscaling group and warm pool.
    fn instance_group(&mut self, ig: &Value, role: Role, ssh_key: Option<&str>) {
        let c = self.c.clone();
        let ig_name = name_of(ig).to_string();
        let resource_name = group_resource_name(&ig_name, role, &c);
        let ig_subnets = spec_strings(ig, "subnets");
        // Public IPs by default when every subnet of the group is public.
        let public = !ig_subnets.is_empty()
            && ig_subnets.iter().all(|name| {
                self.subnets
                    .iter()
                    .any(|s| &s.name == name && s.kind != "Private")
            });
        let tags = self.group_tags(ig, &ig_name, role, &resource_name);

        let mut security_groups = vec![name_ref(&match role {
            Role::ControlPlane => self.masters_sg(),
            Role::Bastion => self.bastion_sg(),
            Role::Node | Role::ApiServer => self.nodes_sg(),
        })];
        for extra in spec_strings(ig, "additionalSecurityGroups") {
            security_groups.push(format!("id:{extra}"));
        }
        let profile = spec_str(ig, "iam/profile")
            .map(str::to_string)
            .unwrap_or_else(|| name_ref(&format!("{}.{c}", role.iam_family())));
        let default_root_size = match role {
            Role::ControlPlane => 64,
            Role::Bastion => 32,
            _ => 128,
        };
        let root_type = spec_str(ig, "rootVolume/type")
            .or_else(|| spec_str(ig, "rootVolumeType"))
            .unwrap_or("gp3")
            .to_string();
        let volume_int = |new: &str, old: &str| spec_int(ig, new).or_else(|| spec_int(ig, old));

        let mut lt = Resource::new("LaunchTemplate", &resource_name, Phase::Cluster)
            .b(
                "AssociatePublicIP",
                spec_bool(ig, "associatePublicIp").unwrap_or(public),
            )
            .opt_s("CPUCredits", spec_str(ig, "cpuCredits").map(str::to_string))
            .i(
                "HTTPPutResponseHopLimit",
                spec_int(ig, "instanceMetadata/httpPutResponseHopLimit")
                    .unwrap_or(if role == Role::ControlPlane { 3 } else { 1 }),
            )
            .s(
                "HTTPTokens",
                spec_str(ig, "instanceMetadata/httpTokens").unwrap_or("required"),
            )
            .s("IAMInstanceProfile", profile)
            .opt_s("ImageID", spec_str(ig, "image").map(str::to_string))
            .b(
                "InstanceMonitoring",
                spec_bool(ig, "detailedInstanceMonitoring").unwrap_or(false),
            )
            .opt_s(
                "InstanceType",
                spec_str(ig, "machineType").map(str::to_string),
            )
            .b(
                "RootVolumeEncryption",
                spec_bool(ig, "rootVolume/encryption")
                    .or_else(|| spec_bool(ig, "rootVolumeEncryption"))
                    .unwrap_or(true),
            );
        if matches!(root_type.as_str(), "gp3" | "io1" | "io2") {
            lt = lt.i(
                "RootVolumeIops",
                volume_int("rootVolume/iops", "rootVolumeIops").unwrap_or(3000),
            );
        }
        lt = lt.i(
            "RootVolumeSize",
            volume_int("rootVolume/size", "rootVolumeSize").unwrap_or(default_root_size),
        );
        if root_type == "gp3" {
            lt = lt.i(
                "RootVolumeThroughput",
                volume_int("rootVolume/throughput", "rootVolumeThroughput").unwrap_or(125),
            );
        }
        lt = lt
            .s("RootVolumeType", &root_type)
            .opt_s("SSHKey", ssh_key.map(name_ref))
            .list("SecurityGroups", security_groups)
            .opt_s("SpotPrice", spec_str(ig, "maxPrice").map(str::to_string))
            .tags(tags.clone())
            .opt_s("Tenancy", spec_str(ig, "tenancy").map(str::to_string));
        // Bastions run no nodeup.
        if role != Role::Bastion {
            let nodeup = complete::nodeup_config(&self.completed, ig, role);
            let user_data = complete::user_data(
                &self.completed,
                ig,
                role,
                &nodeup,
                self.inputs.version,
                &self.region,
            );
            lt = lt.text("UserData", user_data);
            let file = self
                .managed_file(
                    format!("nodeupconfig-{ig_name}"),
                    format!("igconfig/{}/{ig_name}/nodeupconfig.yaml", role.dir()),
                    nodeup,
                )
                .owned_by(&ig_name, role);
            self.push(file);
        }
        self.push(lt.owned_by(&ig_name, role));

        let (min, max) = min_max(ig);
        let asg = self.autoscaling_group(ig, role, &resource_name, &ig_subnets, (min, max), tags);
        self.push(asg.owned_by(&ig_name, role));

        let warm_pool = spec_value(ig, "warmPool")
            .or_else(|| {
                // The cluster-wide warm pool applies to nodes.
                (role == Role::Node)
                    .then(|| spec_value(self.cluster, "warmPool"))
                    .flatten()
            })
            .cloned();
        if let Some(wp) = warm_pool {
            let int = |k: &str| wp.get(k).and_then(Value::as_i64);
            self.push(
                Resource::new("WarmPool", &resource_name, Phase::Cluster)
                    .b(
                        "EnableLifecycleHook",
                        wp.get("enableLifecycleHook")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    )
                    .b("Enabled", true)
                    .opt_i("MaxSize", int("maxSize"))
                    .i("MinSize", int("minSize").unwrap_or(0))
                    .owned_by(&ig_name, role),
            );
        }

        self.out.groups.push(GroupSpec {
            instance_group: ig_name,
            role,
            autoscaling_group: format!("AutoscalingGroup/{resource_name}"),
            launch_template: format!("LaunchTemplate/{resource_name}"),
            min,
            max,
        });
    }

    fn autoscaling_group(
        &self,
        ig: &Value,
        role: Role,
        resource_name: &str,
        subnets: &[String],
        (min, max): (i64, i64),
        tags: BTreeMap<String, String>,
    ) -> Resource {
        let mut load_balancers = Vec::new();
        let mut target_groups = Vec::new();
        if role == Role::ControlPlane && self.load_balancer.is_some() {
            if self.classic_load_balancer() {
                load_balancers.push(name_ref(&self.api_name()));
            } else {
                target_groups.push(name_ref(&self.target_group()));
            }
        }
        for ext in spec_value(ig, "externalLoadBalancers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(n) = ext.get("loadBalancerName").and_then(Value::as_str) {
                load_balancers.push(name_ref(n));
            }
            if let Some(arn) = ext.get("targetGroupArn").and_then(Value::as_str) {
                target_groups.push(format!("id:{arn}"));
            }
        }
        // AWS takes the lifetime in seconds.
        let lifetime = spec_str(ig, "maxInstanceLifetime")
            .and_then(|d| crate::goflags::duration(d).ok())
            .map(|ns| (ns / 1_000_000_000) as i64)
            .filter(|s| *s > 0);
        let mut asg = Resource::new("AutoscalingGroup", resource_name, Phase::Cluster)
            .opt_b("CapacityRebalance", spec_bool(ig, "capacityRebalance"))
            .s("Granularity", "1Minute")
            .b(
                "InstanceProtection",
                spec_bool(ig, "instanceProtection").unwrap_or(false),
            )
            .s("LaunchTemplate", name_ref(resource_name))
            .list("LoadBalancers", load_balancers)
            .opt_i("MaxInstanceLifetime", lifetime)
            .i("MaxSize", max)
            .list("Metrics", METRICS.iter().map(|m| m.to_string()).collect())
            .i("MinSize", min);
        if let Some(mixed) = spec_value(ig, "mixedInstancesPolicy") {
            let text = |k: &str| mixed.get(k).filter(|v| !v.is_null()).map(scalar_string);
            let int = |k: &str| text(k).and_then(|v| v.parse::<i64>().ok());
            let overrides = mixed
                .get("instances")
                .and_then(Value::as_array)
                .map(|l| l.iter().map(scalar_string).collect())
                .unwrap_or_default();
            asg = asg
                .list("MixedInstanceOverrides", overrides)
                .opt_i("MixedOnDemandAboveBase", int("onDemandAboveBase"))
                .opt_s(
                    "MixedOnDemandAllocationStrategy",
                    text("onDemandAllocationStrategy"),
                )
                .opt_i("MixedOnDemandBase", int("onDemandBase"))
                .opt_s(
                    "MixedSpotAllocationStrategy",
                    text("spotAllocationStrategy"),
                )
                .opt_i("MixedSpotInstancePools", int("spotInstancePools"))
                .opt_s("MixedSpotMaxPrice", text("spotMaxPrice"));
        }
        asg.list(
            "Subnets",
            subnets
                .iter()
                .map(|s| name_ref(&format!("{s}.{}", self.c)))
                .collect(),
        )
        .list("SuspendProcesses", spec_strings(ig, "suspendProcesses"))
        .tags(tags)
        .list("TargetGroups", target_groups)
    }
}

/// `364a1f6b…` → `36:4a:1f:6b:…`, the form kOps names SSH keys with.
fn colon_hex(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    chars
        .chunks(2)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(":")
}

/// A cluster name as AWS load balancer and target group names take it:
/// dots to dashes, at most 28 characters, with a hash when shortened.
fn short_name(cluster: &str) -> String {
    let dashed = cluster.replace('.', "-");
    if dashed.chars().count() <= 28 {
        return dashed;
    }
    let hash = complete::hex(&<sha2::Sha256 as sha2::Digest>::digest(cluster.as_bytes()));
    let head: String = dashed.chars().take(21).collect();
    format!("{}-{}", head.trim_end_matches('-'), &hash[..6])
}

fn assume_role_policy() -> String {
    let doc = serde_json::json!({
        "Statement": [{
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "ec2.amazonaws.com"}
        }],
        "Version": "2012-10-17"
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A plausible inline policy for a role family: what kOps grants is long;
/// this keeps its shape and the parts that depend on the cluster.
fn role_policy(family: &str, cluster: &str, completed: &Value) -> String {
    let config_base = spec_str(completed, "configBase").unwrap_or_default();
    let mut statements = vec![serde_json::json!({
        "Action": ["ec2:DescribeAccountAttributes", "ec2:DescribeInstances", "ec2:DescribeRegions", "ec2:DescribeTags"],
        "Effect": "Allow",
        "Resource": "*"
    })];
    if family == "masters" {
        statements.push(serde_json::json!({
            "Action": ["ec2:CreateTags", "ec2:DeleteTags", "ec2:ModifyInstanceAttribute", "elasticloadbalancing:RegisterTargets"],
            "Condition": {"StringEquals": {"aws:ResourceTag/KubernetesCluster": cluster}},
            "Effect": "Allow",
            "Resource": "*"
        }));
    }
    if family != "bastions" {
        statements.push(serde_json::json!({
            "Action": ["s3:GetObject"],
            "Effect": "Allow",
            "Resource": [format!("{config_base}/*")]
        }));
    }
    let doc = serde_json::json!({"Statement": statements, "Version": "2012-10-17"});
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn inputs_for(cluster: &Value, igs: &[Value]) -> Desired {
        build(&Inputs {
            cluster,
            instance_groups: igs,
            store_url: "file:///s",
            ssh_key_ids: &["364a1f6b7d879fdd75c9b4ec820711cd".to_string()],
            version: "1.34.1",
        })
        .unwrap()
    }

    fn cluster() -> Value {
        json!({
            "apiVersion": "kops.k8s.io/v1alpha2", "kind": "Cluster",
            "metadata": {"name": "c.example.com"},
            "spec": {
                "kubernetesVersion": "v1.34.0", "networkCIDR": "172.20.0.0/16",
                "sshAccess": ["0.0.0.0/0"], "kubernetesApiAccess": ["1.2.3.4/32", "::/0"],
                "subnets": [{"name": "us-test-1a", "zone": "us-test-1a", "type": "Public", "cidr": "172.20.32.0/19"}],
                "etcdClusters": [{"name": "main", "etcdMembers": [{"name": "a", "instanceGroup": "master-us-test-1a"}]}]
            }
        })
    }

    fn ig(name: &str, role: &str) -> Value {
        json!({"metadata": {"name": name}, "spec": {"role": role, "machineType": "t3.medium", "minSize": 2, "maxSize": 3, "subnets": ["us-test-1a"], "image": "img"}})
    }

    #[test]
    fn names_follow_kops_conventions() {
        let d = inputs_for(
            &cluster(),
            &[ig("master-us-test-1a", "Master"), ig("nodes", "Node")],
        );
        let keys: BTreeSet<String> = d.resources.iter().map(Resource::key).collect();
        for expected in [
            "VPC/c.example.com",
            "Subnet/us-test-1a.c.example.com",
            "SecurityGroupRule/from-0.0.0.0/0-ingress-tcp-22to22-masters.c.example.com",
            "SecurityGroupRule/from-::/0-ingress-tcp-443to443-masters.c.example.com",
            "SecurityGroupRule/from-nodes.c.example.com-ingress-tcp-1to2379-masters.c.example.com",
            "LaunchTemplate/master-us-test-1a.masters.c.example.com",
            "AutoscalingGroup/nodes.c.example.com",
            "ManagedFile/nodeupconfig-nodes",
            "Keypair/etcd-manager-ca-main",
            "SSHKey/kubernetes.c.example.com-36:4a:1f:6b:7d:87:9f:dd:75:c9:b4:ec:82:07:11:cd",
        ] {
            assert!(keys.contains(expected), "missing {expected}");
        }
        assert_eq!(d.groups.len(), 2);
        let lt = d
            .resources
            .iter()
            .find(|r| r.key() == "LaunchTemplate/nodes.c.example.com")
            .unwrap();
        assert_eq!(
            lt.field("InstanceType"),
            Some(&Field::Str("t3.medium".into()))
        );
    }

    #[test]
    fn unknown_roles_are_validation_errors() {
        let err = build(&Inputs {
            cluster: &cluster(),
            instance_groups: &[ig("x", "Worker")],
            store_url: "file:///s",
            ssh_key_ids: &[],
            version: "1.34.1",
        })
        .unwrap_err();
        assert!(err.to_string().contains("Unsupported value: \"Worker\""));
    }

    #[test]
    fn load_balancer_names_fit_aws_limits() {
        assert_eq!(short_name("c.example.com"), "c-example-com");
        let long = short_name(
            "this.is.truly.a.really.really.really.really.really.long.cluster-name.minimal.example.com",
        );
        assert!(long.len() <= 28, "{long}");
        assert!(long.starts_with("this-is-truly-a-reall"), "{long}");
    }

    #[test]
    fn values_render_like_kops() {
        assert_eq!(Field::List(vec!["a".into(), "b".into()]).render(), "[a, b]");
        let mut m = BTreeMap::new();
        m.insert("k".to_string(), "v".to_string());
        m.insert("a".to_string(), "1".to_string());
        assert_eq!(Field::Map(m).render(), "{a: 1, k: v}");
        assert_eq!(Field::Text("x".into()).render(), "<resource>");
    }
}
