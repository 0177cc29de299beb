# Instance role, least privilege: the SSM agent (AmazonSSMManagedInstanceCore,
# for Session Manager and Ansible's aws_ssm connection), listing and reading
# the checkpoint under its prefix, reading the one API-key secret.  Nothing
# else: Ansible's file transfers through the SSM bucket use presigned URLs
# made by the operator's credentials, so the nodes need no S3 rights there.

data "aws_partition" "current" {}

locals {
  weights_key_prefix = trimsuffix(var.weights_prefix, "/")
  weights_objects    = local.weights_key_prefix == "" ? "${var.weights_bucket_arn}/*" : "${var.weights_bucket_arn}/${local.weights_key_prefix}/*"
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${var.name}-node-"
  assume_role_policy = data.aws_iam_policy_document.assume.json

  tags = var.tags
}

resource "aws_iam_role_policy_attachment" "ssm_core" {
  role       = aws_iam_role.node.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "BucketLocation"
    actions   = ["s3:GetBucketLocation"]
    resources = [var.weights_bucket_arn]
  }

  statement {
    sid       = "ListWeights"
    actions   = ["s3:ListBucket"]
    resources = [var.weights_bucket_arn]

    dynamic "condition" {
      for_each = local.weights_key_prefix == "" ? [] : [1]

      content {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = [local.weights_key_prefix, "${local.weights_key_prefix}/*"]
      }
    }
  }

  statement {
    sid       = "ReadWeights"
    actions   = ["s3:GetObject"]
    resources = [local.weights_objects]
  }

  statement {
    sid       = "ReadApiKeys"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.api_keys_secret_arn]
  }
}

resource "aws_iam_role_policy" "node" {
  name   = "${var.name}-node"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-node-"
  role        = aws_iam_role.node.name

  tags = var.tags
}
