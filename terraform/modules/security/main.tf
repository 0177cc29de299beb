# Three groups:
#   alb   - public HTTPS in (and HTTP only when port 80 redirects), head port
#           out to the nodes
#   nlb   - VPC clients in, head port out to the nodes
#   nodes - head port only from the two load balancers; everything between
#           members of this group (MPI over SSH/TCP, NCCL, EFA; EFA requires
#           all traffic to and from the group itself); outbound HTTPS/HTTP for
#           AWS APIs and package repositories through the NAT gateway.
# No rule admits SSH or anything else from outside the group.

resource "aws_security_group" "alb" {
  name_prefix = "${var.name}-alb-"
  description = "Public ALB: HTTPS from allowed CIDRs, head port to the nodes"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-alb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "nlb" {
  name_prefix = "${var.name}-nlb-"
  description = "Internal NLB: VPC clients in, head port to the nodes"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-nlb" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_security_group" "nodes" {
  name_prefix = "${var.name}-nodes-"
  description = "GPU nodes: head port from the load balancers, all traffic inside the cluster group"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-nodes" })

  lifecycle {
    create_before_destroy = true
  }
}

# --- ALB ---------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "alb_https" {
  for_each = toset(var.public_ingress_cidrs)

  security_group_id = aws_security_group.alb.id
  description       = "HTTPS from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_ingress_rule" "alb_http" {
  for_each = var.http_redirect ? toset(var.public_ingress_cidrs) : toset([])

  security_group_id = aws_security_group.alb.id
  description       = "HTTP from ${each.value} (redirected to HTTPS)"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "alb_to_head" {
  security_group_id            = aws_security_group.alb.id
  description                  = "Head port on the nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.head_port
  to_port                      = var.head_port
  referenced_security_group_id = aws_security_group.nodes.id
}

# --- NLB ---------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "nlb_clients" {
  for_each = toset(var.internal_client_cidrs)

  security_group_id = aws_security_group.nlb.id
  description       = "API clients from ${each.value}"
  ip_protocol       = "tcp"
  from_port         = var.nlb_port
  to_port           = var.nlb_port
  cidr_ipv4         = each.value
}

resource "aws_vpc_security_group_egress_rule" "nlb_to_head" {
  security_group_id            = aws_security_group.nlb.id
  description                  = "Head port on the nodes"
  ip_protocol                  = "tcp"
  from_port                    = var.head_port
  to_port                      = var.head_port
  referenced_security_group_id = aws_security_group.nodes.id
}

# --- Nodes -------------------------------------------------------------------

resource "aws_vpc_security_group_ingress_rule" "head_from_alb" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Head port from the public ALB (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = var.head_port
  to_port                      = var.head_port
  referenced_security_group_id = aws_security_group.alb.id
}

resource "aws_vpc_security_group_ingress_rule" "head_from_nlb" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "Head port from the internal NLB (traffic and health checks)"
  ip_protocol                  = "tcp"
  from_port                    = var.head_port
  to_port                      = var.head_port
  referenced_security_group_id = aws_security_group.nlb.id
}

resource "aws_vpc_security_group_ingress_rule" "cluster_in" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "All traffic from cluster members (MPI, NCCL, EFA)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_egress_rule" "cluster_out" {
  security_group_id            = aws_security_group.nodes.id
  description                  = "All traffic to cluster members (MPI, NCCL, EFA)"
  ip_protocol                  = "-1"
  referenced_security_group_id = aws_security_group.nodes.id
}

resource "aws_vpc_security_group_egress_rule" "nodes_https" {
  security_group_id = aws_security_group.nodes.id
  description       = "HTTPS out: S3, Secrets Manager, SSM, package and source repositories"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "nodes_http" {
  security_group_id = aws_security_group.nodes.id
  description       = "HTTP out: Ubuntu package mirrors"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  cidr_ipv4         = "0.0.0.0/0"
}
