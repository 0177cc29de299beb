# Two-node DeepSeek-Alpha deployment: network, storage, IAM, security
# groups, GPU nodes, load balancers. See docs/deploy.md.

locals {
  internal_client_cidrs = length(var.internal_client_cidrs) > 0 ? var.internal_client_cidrs : [var.vpc_cidr]
}

module "network" {
  source = "../modules/network"

  name                 = var.name
  vpc_cidr             = var.vpc_cidr
  availability_zones   = var.availability_zones
  single_nat_gateway   = var.single_nat_gateway
  enable_ssm_endpoints = var.enable_ssm_endpoints
}

module "storage" {
  source = "../modules/storage"

  name                        = var.name
  weights_bucket_name         = var.weights_bucket_name
  force_destroy_weights       = var.force_destroy_weights
  api_keys_secret_name        = var.api_keys_secret_name
  create_initial_api_key      = var.create_initial_api_key
  secret_recovery_window_days = var.secret_recovery_window_days
}

module "iam" {
  source = "../modules/iam"

  name                = var.name
  weights_bucket_arn  = module.storage.weights_bucket_arn
  weights_prefix      = var.weights_prefix
  api_keys_secret_arn = module.storage.api_keys_secret_arn
}

module "security" {
  source = "../modules/security"

  name                  = var.name
  vpc_id                = module.network.vpc_id
  head_port             = var.head_port
  nlb_port              = var.nlb_port
  public_ingress_cidrs  = var.public_ingress_cidrs
  internal_client_cidrs = local.internal_client_cidrs
  http_redirect         = var.http_listener == "redirect"
}

module "gpu_cluster" {
  source = "../modules/gpu_cluster"

  name                    = var.name
  node_count              = var.node_count
  instance_type           = var.instance_type
  efa_interface_count     = var.efa_interface_count
  ami_id                  = var.ami_id
  subnet_id               = module.network.private_subnet_ids[0]
  security_group_id       = module.security.nodes_security_group_id
  instance_profile_name   = module.iam.instance_profile_name
  weights_storage         = var.weights_storage
  weights_volume_size_gb  = var.weights_volume_size_gb
  capacity_reservation_id = var.capacity_reservation_id
  market_type             = var.market_type
}

module "bench_host" {
  source = "../modules/bench_host"
  count  = var.bench_host ? 1 : 0

  name          = var.name
  vpc_id        = module.network.vpc_id
  vpc_cidr      = var.vpc_cidr
  subnet_id     = module.network.private_subnet_ids[0]
  nlb_port      = var.nlb_port
  instance_type = var.bench_instance_type
}

module "load_balancers" {
  source = "../modules/load_balancers"

  name                         = var.name
  vpc_id                       = module.network.vpc_id
  public_subnet_ids            = module.network.public_subnet_ids
  private_subnet_ids           = module.network.private_subnet_ids
  alb_security_group_id        = module.security.alb_security_group_id
  nlb_security_group_id        = module.security.nlb_security_group_id
  head_instance_id             = module.gpu_cluster.head_instance_id
  head_port                    = var.head_port
  nlb_port                     = var.nlb_port
  certificate_arn              = var.certificate_arn
  idle_timeout_seconds         = var.idle_timeout_seconds
  nlb_tcp_idle_timeout_seconds = var.idle_timeout_seconds
  http_redirect                = var.http_listener == "redirect"
}
