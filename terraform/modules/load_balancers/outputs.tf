output "alb_dns_name" {
  description = "DNS name of the public ALB (point your certificate's domain at it with a CNAME or alias)."
  value       = aws_lb.public.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the ALB, for alias records."
  value       = aws_lb.public.zone_id
}

output "nlb_dns_name" {
  description = "DNS name of the internal NLB."
  value       = aws_lb.internal.dns_name
}

output "alb_idle_timeout_seconds" {
  description = "Idle timeout of the ALB; dsa-head's keep-alive must be longer."
  value       = aws_lb.public.idle_timeout
}

output "alb_target_group_arn" {
  description = "ALB target group of the head."
  value       = aws_lb_target_group.alb_head.arn
}

output "nlb_target_group_arn" {
  description = "NLB target group of the head."
  value       = aws_lb_target_group.nlb_head.arn
}
