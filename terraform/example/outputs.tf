locals {
  public_endpoint = "https://${coalesce(var.public_hostname, module.load_balancers.alb_dns_name)}"
  # dsa-head closes idle keep-alive connections after this; it must outlast
  # the load balancers' idle timeout, or the ALB reuses a connection the head
  # is closing and answers 502.
  head_timeout_keep_alive_seconds = var.idle_timeout_seconds + 60
}

output "public_endpoint" {
  description = "HTTPS endpoint of the public ALB (public_hostname when set; else the ALB's name, which the certificate does not cover)."
  value       = local.public_endpoint
}

output "served_model_name" {
  description = "The model name clients send."
  value       = var.served_model_name
}

output "lb_idle_timeout_seconds" {
  description = "Idle timeout of the ALB and the NLB."
  value       = module.load_balancers.alb_idle_timeout_seconds
}

output "first_request" {
  description = "The first request to try once the playbook has run (export DSA_API_KEY first; docs/deploy.md)."
  value       = "curl -sS ${local.public_endpoint}/v1/chat/completions -H \"Authorization: Bearer $DSA_API_KEY\" -H 'Content-Type: application/json' -d '{\"model\": \"${var.served_model_name}\", \"messages\": [{\"role\": \"user\", \"content\": \"Hello\"}], \"max_tokens\": 32}'"
}

output "alb_dns_name" {
  description = "DNS name of the public ALB."
  value       = module.load_balancers.alb_dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the ALB, for an alias record."
  value       = module.load_balancers.alb_zone_id
}

output "internal_endpoint" {
  description = "HTTP endpoint of the internal NLB, reachable from inside the VPC."
  value       = "http://${module.load_balancers.nlb_dns_name}:${var.nlb_port}"
}

output "bench_instance_id" {
  description = "The load-test host (bench_host = true); null without one."
  value       = var.bench_host ? module.bench_host[0].instance_id : null
}

output "head_instance_id" {
  description = "Instance that runs dsa-head (node 0)."
  value       = module.gpu_cluster.head_instance_id
}

output "node_instance_ids" {
  description = "All node instance IDs, head first."
  value       = module.gpu_cluster.instance_ids
}

output "node_private_ips" {
  description = "Private IPv4 addresses of the nodes, head first."
  value       = module.gpu_cluster.private_ips
}

output "weights_bucket" {
  description = "Bucket to upload the checkpoint to."
  value       = module.storage.weights_bucket_name
}

output "weights_s3_uri" {
  description = "S3 URI the nodes sync the checkpoint from."
  value       = "s3://${module.storage.weights_bucket_name}/${trimsuffix(var.weights_prefix, "/")}"
}

output "api_keys_secret_name" {
  description = "Secrets Manager secret holding the API keys, one per line."
  value       = module.storage.api_keys_secret_name
}

output "ansible" {
  description = "Everything ansible/inventory/terraform_inventory.py needs."
  value = {
    region               = var.region
    ssm_bucket           = module.storage.ssm_transfer_bucket_name
    weights_s3_uri       = "s3://${module.storage.weights_bucket_name}/${trimsuffix(var.weights_prefix, "/")}"
    api_keys_secret_name = module.storage.api_keys_secret_name
    head_port            = var.head_port
    weights_storage      = var.weights_storage
    served_model_name    = var.served_model_name
    # dsa-head's --timeout-keep-alive: longer than the load balancers' idle
    # timeout (lb_idle_timeout_seconds), both from idle_timeout_seconds.
    lb_idle_timeout_seconds         = var.idle_timeout_seconds
    head_timeout_keep_alive_seconds = local.head_timeout_keep_alive_seconds
    nodes = [
      for i, id in module.gpu_cluster.instance_ids : {
        instance_id       = id
        private_ip        = module.gpu_cluster.private_ips[i]
        role              = i == 0 ? "head" : "worker"
        weights_volume_id = var.weights_storage == "ebs" ? module.gpu_cluster.weights_volume_ids[i] : ""
      }
    ]
  }
}
