# An optional load-test host inside the VPC (docs/deploy.md, "Load test"):
# one CPU instance in a private subnet, reached with SSM Session Manager
# like the nodes.  Its role holds only the SSM agent's policy (no weights,
# no secret: the operator passes the API key in); its security group admits
# nothing and lets out only HTTPS/HTTP (SSM, packages) and the internal NLB's
# port inside the VPC.

data "aws_ssm_parameter" "ubuntu" {
  count = var.ami_id == null ? 1 : 0

  name = "/aws/service/canonical/ubuntu/server/24.04/stable/current/amd64/hvm/ebs-gp3/ami-id"
}

data "aws_partition" "current" {}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "bench" {
  name_prefix        = "${var.name}-bench-"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.bench.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

resource "aws_iam_instance_profile" "bench" {
  name_prefix = "${var.name}-bench-"
  role        = aws_iam_role.bench.name

  tags = var.tags
}

resource "aws_security_group" "bench" {
  name_prefix = "${var.name}-bench-"
  description = "Load-test host: no inbound; HTTPS/HTTP out, the internal NLB port in the VPC"
  vpc_id      = var.vpc_id

  tags = merge(var.tags, { Name = "${var.name}-bench" })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "bench_out" {
  for_each = toset(["443", "80"])

  security_group_id = aws_security_group.bench.id
  description       = "Port ${each.key} out: SSM, package mirrors, the public endpoint"
  ip_protocol       = "tcp"
  from_port         = tonumber(each.key)
  to_port           = tonumber(each.key)
  cidr_ipv4         = "0.0.0.0/0"
}

resource "aws_vpc_security_group_egress_rule" "bench_nlb" {
  security_group_id = aws_security_group.bench.id
  description       = "The internal NLB's listener"
  ip_protocol       = "tcp"
  from_port         = var.nlb_port
  to_port           = var.nlb_port
  cidr_ipv4         = var.vpc_cidr
}

resource "aws_instance" "bench" {
  ami                    = var.ami_id != null ? var.ami_id : data.aws_ssm_parameter.ubuntu[0].value
  instance_type          = var.instance_type
  subnet_id              = var.subnet_id
  vpc_security_group_ids = [aws_security_group.bench.id]
  iam_instance_profile   = aws_iam_instance_profile.bench.name

  associate_public_ip_address = false

  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = 40
    volume_type = "gp3"
    encrypted   = true
  }

  tags = merge(var.tags, { Name = "${var.name}-bench", DsaRole = "bench" })
}
