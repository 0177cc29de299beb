output "instance_id" {
  description = "The load-test host (aws ssm start-session --target ...)."
  value       = aws_instance.bench.id
}
