# terraform test for the reference layout, offline: the AWS provider is
# mocked (its schema comes from the local provider mirror; no AWS call is
# made).  Run from terraform/example: `terraform test` (tools/deploy/check.sh
# does, in CI).
#
# The first runs plan and apply the whole layout; the module runs apply one
# module each so the assertions can read resources inside it; the last runs
# give invalid variables and expect validation to refuse them.

mock_provider "aws" {
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }

  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }

  mock_data "aws_region" {
    defaults = {
      name = "us-east-1"
    }
  }

  mock_data "aws_subnet" {
    defaults = {
      availability_zone = "us-east-1a"
    }
  }

  mock_data "aws_ssm_parameter" {
    defaults = {
      value = "ami-0123456789abcdef0"
    }
  }

  # The provider checks the shape of IDs and ARNs passed between resources.
  mock_resource "aws_launch_template" {
    defaults = {
      id             = "lt-0123456789abcdef0"
      latest_version = 1
    }
  }

  mock_resource "aws_lb" {
    defaults = {
      arn      = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/t-alb/0123456789abcdef"
      dns_name = "t-alb-123456789.us-east-1.elb.amazonaws.com"
    }
  }

  mock_resource "aws_lb_target_group" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t-tg/0123456789abcdef"
    }
  }

  mock_resource "aws_lb_listener" {
    defaults = {
      arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/t-alb/0123456789abcdef/0123456789abcdef"
    }
  }

  mock_resource "aws_s3_bucket" {
    defaults = {
      arn = "arn:aws:s3:::t-bucket"
    }
  }

  mock_resource "aws_secretsmanager_secret" {
    defaults = {
      arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:deepseek-alpha/api-keys-AbCdEf"
    }
  }

  mock_resource "aws_iam_role" {
    defaults = {
      arn = "arn:aws:iam::123456789012:role/t-node"
    }
  }
}

variables {
  certificate_arn = "arn:aws:acm:us-east-1:123456789012:certificate/0f0e0d0c-0b0a-0908-0706-050403020100"
}

# --- the whole layout ---------------------------------------------------------

run "reference_plans" {
  command = plan

  assert {
    condition     = output.served_model_name == "deepseek-ai/DeepSeek-V3"
    error_message = "served_model_name output is not the variable's default"
  }

  assert {
    condition     = output.ansible.lb_idle_timeout_seconds == var.idle_timeout_seconds
    error_message = "the ansible output does not carry the load balancers' idle timeout"
  }

  assert {
    condition     = output.ansible.head_timeout_keep_alive_seconds > var.idle_timeout_seconds
    error_message = "dsa-head's keep-alive must exceed the load balancers' idle timeout"
  }

  assert {
    condition     = output.ansible.served_model_name == var.served_model_name
    error_message = "the ansible output does not carry served_model_name"
  }
}

run "reference_applies" {
  command = apply

  variables {
    public_hostname      = "api.example.com"
    idle_timeout_seconds = 1800
    served_model_name    = "deepseek-r1"
  }

  assert {
    condition     = length(output.node_instance_ids) == 2 && length(output.ansible.nodes) == 2
    error_message = "the reference layout has two nodes"
  }

  assert {
    condition     = output.ansible.nodes[0].role == "head" && output.ansible.nodes[1].role == "worker"
    error_message = "node 0 must be the head"
  }

  assert {
    condition     = output.public_endpoint == "https://api.example.com"
    error_message = "public_endpoint must use public_hostname: ${output.public_endpoint}"
  }

  assert {
    condition     = output.lb_idle_timeout_seconds == 1800 && output.ansible.head_timeout_keep_alive_seconds > 1800
    error_message = "idle timeout ${output.lb_idle_timeout_seconds} / head keep-alive ${output.ansible.head_timeout_keep_alive_seconds}"
  }

  assert {
    condition     = strcontains(output.first_request, "https://api.example.com/v1/chat/completions") && strcontains(output.first_request, "\"model\": \"deepseek-r1\"") && strcontains(output.first_request, "Authorization: Bearer $DSA_API_KEY")
    error_message = "first_request must call the public endpoint with the served model name and the key: ${output.first_request}"
  }

  assert {
    condition     = startswith(output.weights_s3_uri, "s3://") && endswith(output.weights_s3_uri, "/DeepSeek-V3")
    error_message = "weights_s3_uri: ${output.weights_s3_uri}"
  }
}

# --- networking ----------------------------------------------------------------

run "network_subnets_fit" {
  command = apply

  module {
    source = "../modules/network"
  }

  variables {
    name               = "t"
    vpc_cidr           = "10.42.0.0/22"
    availability_zones = ["us-east-1a", "us-east-1b", "us-east-1c"]
  }

  assert {
    condition     = aws_subnet.public[*].cidr_block == ["10.42.0.0/26", "10.42.0.64/26", "10.42.0.128/26"]
    error_message = "public subnets: ${jsonencode(aws_subnet.public[*].cidr_block)}"
  }

  assert {
    condition     = aws_subnet.private[*].cidr_block == ["10.42.2.0/26", "10.42.2.64/26", "10.42.2.128/26"]
    error_message = "private subnets: ${jsonencode(aws_subnet.private[*].cidr_block)}"
  }

  assert {
    condition     = alltrue([for s in concat(aws_subnet.public, aws_subnet.private) : s.map_public_ip_on_launch != true])
    error_message = "no subnet may give instances public addresses"
  }
}

# --- security groups -----------------------------------------------------------

run "node_security_group_closed" {
  command = apply

  module {
    source = "../modules/security"
  }

  variables {
    name                  = "t"
    vpc_id                = "vpc-0123456789abcdef0"
    head_port             = 8000
    nlb_port              = 8000
    public_ingress_cidrs  = ["0.0.0.0/0"]
    internal_client_cidrs = ["10.42.0.0/16"]
    http_redirect         = true
  }

  # Every ingress rule of the module, whichever group it belongs to.
  assert {
    condition = alltrue([
      for r in concat(
        [aws_vpc_security_group_ingress_rule.head_from_alb, aws_vpc_security_group_ingress_rule.head_from_nlb, aws_vpc_security_group_ingress_rule.cluster_in],
        values(aws_vpc_security_group_ingress_rule.alb_https), values(aws_vpc_security_group_ingress_rule.alb_http),
        values(aws_vpc_security_group_ingress_rule.nlb_clients)
      ) : r.security_group_id != aws_security_group.nodes.id || (r.cidr_ipv4 == null && r.cidr_ipv6 == null && r.referenced_security_group_id != null)
    ])
    error_message = "the nodes' security group admits traffic by CIDR; it may only admit the load balancers' and its own group"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.head_from_alb.from_port == 8000 && aws_vpc_security_group_ingress_rule.head_from_alb.to_port == 8000 && aws_vpc_security_group_ingress_rule.head_from_alb.referenced_security_group_id == aws_security_group.alb.id
    error_message = "the ALB may reach the head port only"
  }

  assert {
    condition     = aws_vpc_security_group_ingress_rule.cluster_in.referenced_security_group_id == aws_security_group.nodes.id
    error_message = "all-traffic ingress must come only from the group itself (EFA)"
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.alb_http) == 1 && length(aws_vpc_security_group_ingress_rule.alb_https) == 1
    error_message = "with http_redirect the ALB takes 80 and 443"
  }
}

run "port_80_closed_by_default" {
  command = plan

  module {
    source = "../modules/security"
  }

  variables {
    name                  = "t"
    vpc_id                = "vpc-0123456789abcdef0"
    head_port             = 8000
    nlb_port              = 8000
    public_ingress_cidrs  = ["0.0.0.0/0"]
    internal_client_cidrs = ["10.42.0.0/16"]
  }

  assert {
    condition     = length(aws_vpc_security_group_ingress_rule.alb_http) == 0
    error_message = "port 80 must be closed unless http_redirect is set"
  }
}

# --- GPU nodes -------------------------------------------------------------------

run "nodes_efa_placement_imdsv2" {
  command = apply

  module {
    source = "../modules/gpu_cluster"
  }

  variables {
    name                  = "t"
    node_count            = 2
    instance_type         = "p5.48xlarge"
    efa_interface_count   = 32
    subnet_id             = "subnet-0123456789abcdef0"
    security_group_id     = "sg-0123456789abcdef0"
    instance_profile_name = "t-node"
    ami_id                = "ami-0123456789abcdef0"
  }

  assert {
    condition     = aws_launch_template.node.metadata_options[0].http_tokens == "required" && aws_launch_template.node.metadata_options[0].http_endpoint == "enabled"
    error_message = "IMDSv2 (http_tokens = required) must be enforced"
  }

  assert {
    condition     = length(aws_launch_template.node.network_interfaces) == 32
    error_message = "one interface per EFA card: ${length(aws_launch_template.node.network_interfaces)}"
  }

  assert {
    condition     = aws_launch_template.node.network_interfaces[0].interface_type == "efa" && alltrue([for n in slice(aws_launch_template.node.network_interfaces, 1, 32) : n.interface_type == "efa-only"])
    error_message = "card 0 must carry an EFA interface, the others EFA-only interfaces"
  }

  assert {
    condition     = toset([for n in aws_launch_template.node.network_interfaces : n.network_card_index]) == toset(range(32))
    error_message = "every network card must have exactly one interface"
  }

  assert {
    condition     = aws_placement_group.this.strategy == "cluster" && alltrue([for i in aws_instance.node : i.placement_group == aws_placement_group.this.id])
    error_message = "every node must be in the cluster placement group"
  }

  assert {
    condition     = alltrue([for n in aws_launch_template.node.network_interfaces : n.associate_public_ip_address == null || n.associate_public_ip_address == "false"])
    error_message = "nodes must not get public addresses"
  }
}

# --- load balancers --------------------------------------------------------------

run "load_balancers" {
  command = apply

  module {
    source = "../modules/load_balancers"
  }

  variables {
    name                         = "t"
    vpc_id                       = "vpc-0123456789abcdef0"
    public_subnet_ids            = ["subnet-a", "subnet-b"]
    private_subnet_ids           = ["subnet-c", "subnet-d"]
    alb_security_group_id        = "sg-alb"
    nlb_security_group_id        = "sg-nlb"
    head_instance_id             = "i-0123456789abcdef0"
    head_port                    = 8000
    nlb_port                     = 8000
    idle_timeout_seconds         = 1234
    nlb_tcp_idle_timeout_seconds = 1234
  }

  assert {
    condition     = aws_lb.public.idle_timeout == var.idle_timeout_seconds && aws_lb_listener.internal.tcp_idle_timeout_seconds == var.nlb_tcp_idle_timeout_seconds
    error_message = "listener idle timeouts must equal the variable"
  }

  assert {
    condition     = aws_lb_target_group.alb_head.health_check[0].path == "/health" && aws_lb_target_group.nlb_head.health_check[0].path == "/health"
    error_message = "both target groups must health-check /health"
  }

  assert {
    condition     = aws_lb_target_group.alb_head.health_check[0].matcher == "200" && aws_lb_target_group.nlb_head.health_check[0].protocol == "HTTP"
    error_message = "health checks must be HTTP and want 200"
  }

  assert {
    condition     = aws_lb_listener.https.protocol == "HTTPS" && aws_lb_listener.https.port == 443 && aws_lb_listener.https.certificate_arn == var.certificate_arn
    error_message = "the public listener must be HTTPS on 443 with the certificate"
  }

  assert {
    condition     = length(setintersection(toset(flatten([for c in aws_lb_listener_rule.internal_only.condition : [for pp in c.path_pattern : tolist(pp.values)]])), toset(["/metrics", "/metrics/*"]))) == 2 && aws_lb_listener_rule.internal_only.action[0].type == "fixed-response" && aws_lb_listener_rule.internal_only.action[0].fixed_response[0].status_code == "403" && aws_lb_listener_rule.internal_only.listener_arn == aws_lb_listener.https.arn
    error_message = "/metrics must be answered 403 by the public listener, never forwarded"
  }

  assert {
    condition     = length(aws_lb_listener.http_redirect) == 0
    error_message = "no port 80 listener unless http_redirect is set"
  }

  assert {
    condition     = aws_lb.internal.internal && aws_lb.public.internal == false && aws_lb.public.drop_invalid_header_fields
    error_message = "the NLB must be internal, the ALB public and dropping invalid headers"
  }
}

run "http_redirect_never_forwards" {
  command = apply

  module {
    source = "../modules/load_balancers"
  }

  variables {
    name                  = "t"
    vpc_id                = "vpc-0123456789abcdef0"
    public_subnet_ids     = ["subnet-a", "subnet-b"]
    private_subnet_ids    = ["subnet-c", "subnet-d"]
    alb_security_group_id = "sg-alb"
    nlb_security_group_id = "sg-nlb"
    head_instance_id      = "i-0123456789abcdef0"
    head_port             = 8000
    nlb_port              = 8000
    http_redirect         = true
  }

  assert {
    condition     = length(aws_lb_listener.http_redirect) == 1 && aws_lb_listener.http_redirect[0].default_action[0].type == "redirect" && aws_lb_listener.http_redirect[0].default_action[0].redirect[0].protocol == "HTTPS" && aws_lb_listener.http_redirect[0].default_action[0].target_group_arn == null
    error_message = "port 80 may only redirect to HTTPS"
  }
}

# --- load-test host -------------------------------------------------------------

run "bench_host_inside_the_vpc" {
  command = apply

  variables {
    bench_host = true
  }

  assert {
    condition     = output.bench_instance_id != null
    error_message = "bench_host = true must create the load-test host"
  }

  assert {
    condition     = module.bench_host[0].instance_id == output.bench_instance_id
    error_message = "bench_instance_id must be the module's instance"
  }
}

run "bench_host_closed" {
  command = apply

  module {
    source = "../modules/bench_host"
  }

  variables {
    name      = "t"
    vpc_id    = "vpc-0123456789abcdef0"
    vpc_cidr  = "10.42.0.0/16"
    subnet_id = "subnet-0123456789abcdef0"
    nlb_port  = 8000
    ami_id    = "ami-0123456789abcdef0"
  }

  assert {
    condition     = aws_instance.bench.metadata_options[0].http_tokens == "required" && aws_instance.bench.associate_public_ip_address == false
    error_message = "the bench host needs IMDSv2 and no public address"
  }

  assert {
    condition     = aws_vpc_security_group_egress_rule.bench_nlb.cidr_ipv4 == "10.42.0.0/16" && aws_vpc_security_group_egress_rule.bench_nlb.from_port == 8000
    error_message = "the bench host reaches the NLB port inside the VPC only"
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ssm_core.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "the bench host's role holds the SSM agent's policy only"
  }
}

# --- IAM: least privilege ------------------------------------------------------

run "iam_least_privilege" {
  command = apply

  module {
    source = "../modules/iam"
  }

  variables {
    name                = "t"
    weights_bucket_arn  = "arn:aws:s3:::w"
    weights_prefix      = "DeepSeek-V3/"
    api_keys_secret_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf"
  }

  assert {
    condition     = toset(flatten([for s in data.aws_iam_policy_document.node.statement : s.actions])) == toset(["s3:GetBucketLocation", "s3:ListBucket", "s3:GetObject", "secretsmanager:GetSecretValue"])
    error_message = "the node policy may only read the weights and the secret: ${jsonencode(flatten([for s in data.aws_iam_policy_document.node.statement : s.actions]))}"
  }

  assert {
    condition     = toset(flatten([for s in data.aws_iam_policy_document.node.statement : s.resources])) == toset(["arn:aws:s3:::w", "arn:aws:s3:::w/DeepSeek-V3/*", "arn:aws:secretsmanager:us-east-1:123456789012:secret:k-AbCdEf"])
    error_message = "the node policy names only the weights bucket, its prefix and the one secret"
  }

  assert {
    condition     = alltrue([for s in data.aws_iam_policy_document.node.statement : s.effect == null || s.effect == "Allow"]) && length([for s in data.aws_iam_policy_document.node.statement : s if s.sid == "ListWeights" && length(s.condition) == 1]) == 1
    error_message = "listing must be limited to the checkpoint's prefix"
  }

  assert {
    condition     = aws_iam_role_policy_attachment.ssm_core.policy_arn == "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
    error_message = "the only managed policy is SSM core"
  }
}

# --- invalid variables are refused ----------------------------------------------

# /17 to /20 used to pass validation and then break the plan (the subnet
# arithmetic ran out of room): they must plan now.
run "vpc_cidr_18_plans" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0/18"
  }

  assert {
    condition     = output.ansible.region == "us-east-1"
    error_message = "a /18 VPC must plan"
  }
}

run "vpc_cidr_too_small" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0/23"
  }

  expect_failures = [var.vpc_cidr]
}

run "vpc_cidr_not_a_cidr" {
  command = plan

  variables {
    vpc_cidr = "10.42.0.0"
  }

  expect_failures = [var.vpc_cidr]
}

run "vpc_cidr_larger_than_aws_allows" {
  command = plan

  variables {
    vpc_cidr = "10.0.0.0/8"
  }

  expect_failures = [var.vpc_cidr]
}

run "certificate_not_an_arn" {
  command = plan

  variables {
    certificate_arn = "my-certificate"
  }

  expect_failures = [var.certificate_arn]
}

run "idle_timeout_out_of_range" {
  command = plan

  variables {
    idle_timeout_seconds = 5
  }

  expect_failures = [var.idle_timeout_seconds]
}

run "one_availability_zone" {
  command = plan

  variables {
    availability_zones = ["us-east-1a"]
  }

  expect_failures = [var.availability_zones]
}

run "bad_served_model_name" {
  command = plan

  variables {
    served_model_name = "has spaces"
  }

  expect_failures = [var.served_model_name]
}

run "bad_http_listener" {
  command = plan

  variables {
    http_listener = "forward"
  }

  expect_failures = [var.http_listener]
}

run "bad_public_ingress" {
  command = plan

  variables {
    public_ingress_cidrs = ["everyone"]
  }

  expect_failures = [var.public_ingress_cidrs]
}

run "bad_node_count" {
  command = plan

  variables {
    node_count = 0
  }

  expect_failures = [var.node_count]
}
