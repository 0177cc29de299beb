# Public ALB (HTTPS, ACM certificate) and internal NLB, both in front of the
# head's port on node 0, both health-checking GET /health.  /metrics is
# answered 403 by the ALB itself, so the public path never reaches it;
# Prometheus scrapes the head from inside the VPC.  Port 80 is closed unless
# http_redirect is set, and then only redirects (nothing is forwarded).

locals {
  short = substr(var.name, 0, 24)

  # One health check for both load balancers, so they agree on when the
  # head is serving (GET /health answers 503 while loading or draining).
  health_check = {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 15
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }
}

# --- Public ALB ----------------------------------------------------------------

resource "aws_lb" "public" {
  name                       = "${local.short}-alb"
  load_balancer_type         = "application"
  internal                   = false
  subnets                    = var.public_subnet_ids
  security_groups            = [var.alb_security_group_id]
  idle_timeout               = var.idle_timeout_seconds
  drop_invalid_header_fields = true
  enable_deletion_protection = var.deletion_protection

  tags = var.tags
}

resource "aws_lb_target_group" "alb_head" {
  name                 = "${local.short}-alb-tg"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "HTTP"
  port                 = var.head_port
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = local.health_check.path
    matcher             = local.health_check.matcher
    interval            = local.health_check.interval
    timeout             = local.health_check.timeout
    healthy_threshold   = local.health_check.healthy_threshold
    unhealthy_threshold = local.health_check.unhealthy_threshold
  }

  tags = var.tags
}

resource "aws_lb_target_group_attachment" "alb_head" {
  target_group_arn = aws_lb_target_group.alb_head.arn
  target_id        = var.head_instance_id
  port             = var.head_port
}

resource "aws_lb_listener" "https" {
  load_balancer_arn = aws_lb.public.arn
  port              = 443
  protocol          = "HTTPS"
  ssl_policy        = var.ssl_policy
  certificate_arn   = var.certificate_arn

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.alb_head.arn
  }

  tags = var.tags
}

# Paths the public listener refuses before forwarding (exact and below).
resource "aws_lb_listener_rule" "internal_only" {
  listener_arn = aws_lb_listener.https.arn
  priority     = 1

  condition {
    path_pattern {
      values = flatten([for p in var.internal_only_paths : [p, "${p}/*"]])
    }
  }

  action {
    type = "fixed-response"

    fixed_response {
      content_type = "application/json"
      status_code  = "403"
      message_body = jsonencode({ error = { message = "This path is served inside the VPC only.", type = "forbidden", param = null, code = 403 } })
    }
  }

  tags = var.tags
}

resource "aws_lb_listener" "http_redirect" {
  count = var.http_redirect ? 1 : 0

  load_balancer_arn = aws_lb.public.arn
  port              = 80
  protocol          = "HTTP"

  default_action {
    type = "redirect"

    redirect {
      protocol    = "HTTPS"
      port        = "443"
      status_code = "HTTP_301"
    }
  }

  tags = var.tags
}

# --- Internal NLB --------------------------------------------------------------

resource "aws_lb" "internal" {
  name                             = "${local.short}-nlb"
  load_balancer_type               = "network"
  internal                         = true
  subnets                          = var.private_subnet_ids
  security_groups                  = [var.nlb_security_group_id]
  enable_cross_zone_load_balancing = true
  enable_deletion_protection       = var.deletion_protection

  tags = var.tags
}

resource "aws_lb_target_group" "nlb_head" {
  name                 = "${local.short}-nlb-tg"
  vpc_id               = var.vpc_id
  target_type          = "instance"
  protocol             = "TCP"
  port                 = var.head_port
  deregistration_delay = 30

  health_check {
    enabled             = true
    protocol            = "HTTP"
    path                = local.health_check.path
    matcher             = local.health_check.matcher
    interval            = local.health_check.interval
    timeout             = local.health_check.timeout
    healthy_threshold   = local.health_check.healthy_threshold
    unhealthy_threshold = local.health_check.unhealthy_threshold
  }

  tags = var.tags
}

resource "aws_lb_target_group_attachment" "nlb_head" {
  target_group_arn = aws_lb_target_group.nlb_head.arn
  target_id        = var.head_instance_id
  port             = var.head_port
}

resource "aws_lb_listener" "internal" {
  load_balancer_arn        = aws_lb.internal.arn
  port                     = var.nlb_port
  protocol                 = "TCP"
  tcp_idle_timeout_seconds = var.nlb_tcp_idle_timeout_seconds

  default_action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.nlb_head.arn
  }

  tags = var.tags
}
